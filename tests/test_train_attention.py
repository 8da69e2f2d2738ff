"""Packed attention computes only within-document blocks, and equals the masked reference."""

from __future__ import annotations

import math

import pytest

from train.attention import (
    PACKED_SDPA,
    document_bounds,
    packed_sdpa_forward,
    register_packed_attention,
    use_packed_attention,
)
from train.collate import collate_packed
from train.dataset import encode_sample
from train.loop import packed_attention_kwargs
from train.synthetic import synthetic_conversations

LENGTHS = [5, 17, 1, 9]


class _Attn:  # the parts of a transformers attention module the function reads
    def __init__(self, groups: int) -> None:
        self.num_key_value_groups = groups
        self.training = False


def _qkv(batch: int, length: int, heads: int = 4, kv_heads: int = 2, dim: int = 8):
    import torch

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(batch, heads, length, dim, generator=gen)
    k = torch.randn(batch, kv_heads, length, dim, generator=gen)
    v = torch.randn(batch, kv_heads, length, dim, generator=gen)
    return q, k, v


def _reference(q, k, v, doc_of_token):
    """Eager attention with an explicit block-diagonal causal mask (cross-document = -inf)."""
    import torch

    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    n = q.shape[2]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    same_doc = doc_of_token[:, :, None] == doc_of_token[:, None, :]
    allowed = (causal[None] & same_doc)[:, None]
    out = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    return out.transpose(1, 2)


def _doc_ids(lengths):
    import torch

    return torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))[None]


def test_packed_attention_equals_block_diagonal_reference_with_cu_seq_lens():
    import torch

    q, k, v = _qkv(1, sum(LENGTHS))
    cu = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32)
    out, _ = packed_sdpa_forward(_Attn(2), q, k, v, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    expected = _reference(q, k, v, _doc_ids(LENGTHS))
    assert out.shape == (1, sum(LENGTHS), 4, 8)
    assert (out - expected).abs().max().item() < 1e-5
    # Control: one document over the whole row (what a missing boundary would give) differs.
    leaky, _ = packed_sdpa_forward(_Attn(2), q, k, v, None)
    assert (leaky - expected).abs().max().item() > 1e-2


def test_packed_attention_reads_documents_from_restarting_positions_per_row():
    import torch

    rows = [[6, 10], [16]]
    q, k, v = _qkv(2, 16)
    positions = torch.cat([torch.cat([torch.arange(n) for n in row])[None] for row in rows])
    out, _ = packed_sdpa_forward(_Attn(2), q, k, v, None, position_ids=positions)
    docs = torch.cat([_doc_ids([6, 10]), _doc_ids([16])])
    assert (out - _reference(q, k, v, docs)).abs().max().item() < 1e-5


def test_packed_attention_never_computes_cross_document_scores(
    tiny_model_dir, tiny_tokenizer, monkeypatch
):
    """Every SDPA call of a packed forward sees exactly one document, never the row."""
    import torch

    from fastchat_lite.model_loading import load_model

    records = synthetic_conversations(4, seed=5, median_words=15, max_words=40)
    samples = [encode_sample(r, tiny_tokenizer, "vicuna_v1.1", 512) for r in records]
    batch = collate_packed([samples[:2], samples[2:]], tiny_tokenizer.pad_token_id)
    model = load_model(tiny_model_dir, dtype="fp32", attn_implementation="sdpa")
    assert use_packed_attention(model) == PACKED_SDPA
    calls = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        calls.append((q.shape[2], k.shape[2], attn_mask, kwargs.get("is_causal")))
        return real_sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
            **packed_attention_kwargs(batch, "cpu"),
        )  # fmt: skip
    lengths = [len(s) for s in samples]
    layers = model.config.num_hidden_layers
    assert [c[0] for c in calls] == lengths * layers
    assert all(q == k and mask is None and causal for q, k, mask, causal in calls)
    assert sum(q * k for q, k, _, _ in calls) == layers * sum(n * n for n in lengths)


def test_padding_mask_falls_back_to_plain_sdpa():
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v = _qkv(2, 6)
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()
    mask[1, :, :, 4:] = False
    ours, _ = packed_sdpa_forward(_Attn(2), q, k, v, mask)
    plain, _ = sdpa_attention_forward(_Attn(2), q, k, v, mask)
    assert torch.equal(ours, plain)


def test_cu_seq_lens_must_cover_one_flattened_row():
    import torch

    with pytest.raises(ValueError, match="1 row"):
        document_bounds(torch.tensor([0, 3, 6]), None, batch=2, length=6)
    with pytest.raises(ValueError, match="do not cover"):
        document_bounds(torch.tensor([0, 3, 5]), None, batch=1, length=6)
    assert document_bounds(torch.tensor([0, 3, 6]), None, 1, 6) == [[(0, 3), (3, 6)]]


def test_only_sdpa_models_switch_and_the_saved_config_does_not_carry_it(tiny_model_dir, tmp_path):
    import json

    from fastchat_lite.model_loading import load_model

    eager = load_model(tiny_model_dir, dtype="fp32", attn_implementation="eager")
    assert use_packed_attention(eager) == "eager"
    model = load_model(tiny_model_dir, dtype="fp32", attn_implementation="sdpa")
    assert register_packed_attention() == use_packed_attention(model) == PACKED_SDPA
    model.save_pretrained(tmp_path)
    assert PACKED_SDPA not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
