"""Packing must not change the loss: within-document attention + the same normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from train.collate import collate_packed, collate_rows
from train.dataset import encode_sample
from train.loop import packed_attention_kwargs
from train.packing import BatchShape, DataPlan, pack_rows, plan_epoch, rank_slots
from train.synthetic import synthetic_conversations


@pytest.fixture(scope="module")
def samples(tiny_tokenizer):
    records = synthetic_conversations(5, seed=3, median_words=20, max_words=60)
    return [encode_sample(r, tiny_tokenizer, "vicuna_v1.1", 512) for r in records]


def _model(tiny_model_dir, attn):
    import torch

    from fastchat_lite.model_loading import load_model

    torch.manual_seed(0)
    model = load_model(tiny_model_dir, dtype="fp32", attn_implementation=attn)
    model.train()
    return model


def _per_token_loss_and_grads(model, batch):
    import torch.nn.functional as F

    model.zero_grad()
    logits = model(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
        **packed_attention_kwargs(batch, "cpu"),
    ).logits  # fmt: skip
    targets = batch["targets"].flatten()
    losses = F.cross_entropy(logits.flatten(0, 1), targets, ignore_index=-100, reduction="none")
    per_token = losses[targets != -100]
    (per_token.sum() / per_token.numel()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return per_token.detach(), grads


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_and_gradients_equal_unpacked(tiny_model_dir, tiny_tokenizer, samples, attn):
    model = _model(tiny_model_dir, attn)
    pad = tiny_tokenizer.pad_token_id
    packed = collate_rows([samples[:3], samples[3:]], pad)
    unpacked = collate_rows([[s] for s in samples], pad)
    assert packed["input_ids"].shape[0] == 2 and unpacked["input_ids"].shape[0] == 5
    assert packed["trained_tokens"] == unpacked["trained_tokens"] > 0
    loss_p, grads_p = _per_token_loss_and_grads(model, packed)
    loss_u, grads_u = _per_token_loss_and_grads(model, unpacked)
    assert loss_p.shape == loss_u.shape
    assert (loss_p - loss_u).abs().max().item() < 1e-5
    for name, grad in grads_u.items():
        assert np.allclose(grads_p[name].numpy(), grad.numpy(), rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("attn", ["packed", "sdpa", "eager"])
def test_flattened_packed_batch_gives_unpacked_loss_and_gradients(
    tiny_model_dir, tiny_tokenizer, samples, attn
):
    """What training runs: one flattened row + cu_seq_lens, through every attention backend."""
    from train.attention import PACKED_SDPA, use_packed_attention

    model = _model(tiny_model_dir, "sdpa" if attn == "packed" else attn)
    if attn == "packed":
        assert use_packed_attention(model) == PACKED_SDPA
    pad = tiny_tokenizer.pad_token_id
    packed = collate_packed([samples[:3], samples[3:]], pad)
    unpacked = collate_rows([[s] for s in samples], pad)
    assert packed["input_ids"].shape == (1, sum(len(s) for s in samples))
    assert packed["cu_seq_lens"].tolist() == np.cumsum([0] + [len(s) for s in samples]).tolist()
    assert packed["trained_tokens"] == unpacked["trained_tokens"] > 0
    loss_p, grads_p = _per_token_loss_and_grads(model, packed)
    loss_u, grads_u = _per_token_loss_and_grads(model, unpacked)
    assert (loss_p - loss_u).abs().max().item() < 1e-5
    for name, grad in grads_u.items():
        assert np.allclose(grads_p[name].numpy(), grad.numpy(), rtol=1e-4, atol=1e-6), name


def test_collate_packed_of_an_empty_slot_is_one_untrained_pad():
    batch = collate_packed([], pad_id=3)
    assert batch["input_ids"].tolist() == [[3]] and batch["targets"].tolist() == [[-100]]
    assert batch["cu_seq_lens"].tolist() == [0, 1]
    assert batch["real_tokens"] == batch["trained_tokens"] == 0


def test_packing_without_position_restart_would_leak_attention(
    tiny_model_dir, tiny_tokenizer, samples
):
    """Control: the equality above is not vacuous; one long sequence differs."""
    import torch

    model = _model(tiny_model_dir, "sdpa")
    packed = collate_rows([samples[:3]], tiny_tokenizer.pad_token_id)
    leaky = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1])[None])
    loss_p, _ = _per_token_loss_and_grads(model, packed)
    loss_l, _ = _per_token_loss_and_grads(model, leaky)
    assert (loss_p - loss_l).abs().max().item() > 1e-3


def test_collate_restarts_positions_and_pads_without_loss(samples):
    batch = collate_rows([samples[:2], samples[2:3]], pad_id=3)
    n0, n1 = len(samples[0]), len(samples[1])
    pos = batch["position_ids"][0].tolist()
    assert pos[:n0] == list(range(n0)) and pos[n0 : n0 + n1] == list(range(n1))
    row1 = len(samples[2])
    assert (batch["input_ids"][1, row1:] == 3).all()
    assert (batch["targets"][1, row1:] == -100).all()
    assert batch["real_tokens"] == n0 + n1 + row1


def test_labels_never_cross_a_sample_boundary(samples):
    """The last position of each sample predicts nothing (shifted per sample, not per row)."""
    batch = collate_rows([samples[:3]], pad_id=0)
    end = 0
    for s in samples[:3]:
        end += len(s)
        assert batch["targets"][0, end - 1].item() == -100


def test_best_fit_packing_fills_rows_and_keeps_every_sample_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=400).tolist()
    rows = pack_rows(lengths, list(range(400)), max_length=512)
    flat = sorted(i for row in rows for i in row)
    assert flat == list(range(400))
    assert all(sum(lengths[i] for i in row) <= 512 for row in rows)
    assert len(rows) <= int(sum(lengths) / 512 * 1.05) + 1  # >= ~95% full


@pytest.mark.parametrize("packing,group", [(True, False), (False, True), (False, False)])
def test_epoch_plan_is_deterministic_and_covers_every_sample(packing, group):
    lengths = np.random.default_rng(1).integers(5, 200, size=101).tolist()
    shape = BatchShape(256, batch_size=3, accumulation=2, world_size=2, packing=packing,
                       group_by_length=group)  # fmt: skip
    plan = plan_epoch(lengths, shape, seed=7, epoch=0)
    assert plan == plan_epoch(lengths, shape, seed=7, epoch=0)
    assert plan != plan_epoch(lengths, shape, seed=7, epoch=1)
    assert all(len(step) == shape.slots for step in plan)
    seen = [i for step in plan for mb in step for row in mb for i in row]
    assert sorted(seen) == list(range(101))
    ranks = [rank_slots(plan[0], r, 2) for r in range(2)]
    assert ranks[0] + ranks[1] == plan[0]


def test_length_grouping_reduces_padding():
    lengths = np.random.default_rng(2).lognormal(5, 1, size=2000).clip(1, 2048).astype(int)

    def padded(group: bool) -> int:
        shape = BatchShape(2048, batch_size=8, accumulation=1, packing=False, group_by_length=group)
        steps = plan_epoch(lengths.tolist(), shape, seed=0, epoch=0)
        return sum(max(lengths[r[0]] for r in mb) * len(mb) for s in steps for mb in s if mb)

    assert padded(True) < 0.6 * padded(False)


def test_total_steps_counts_fractional_epochs_and_max_steps():
    plan = DataPlan([10] * 40, BatchShape(64, batch_size=1, accumulation=1), seed=0)
    per_epoch = plan.steps_in_epoch(0)
    assert per_epoch == 7  # 6 samples of 10 tokens per 64-token row
    assert plan.total_steps(2.5, -1) == 2 * 7 + 4
    assert plan.total_steps(3, 5) == 5
