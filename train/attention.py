"""Packed attention that only computes within-document blocks, whatever the backend.

A packed micro-batch is one flattened row of whole conversations (``train.collate.collate_packed``)
with ``cu_seq_lens`` = cumulative document lengths ``[0, l1, l1+l2, ...]``, flash-attn's varlen
convention, passed to the model as ``cu_seq_lens_q``/``cu_seq_lens_k`` (+ ``max_length_q/k``):

- ``flash_attention_2``: transformers hands them straight to ``flash_attn_varlen_func``.
- ``sdpa`` (CPU, or GPU without flash-attn): :data:`PACKED_SDPA`, registered here, runs one causal
  SDPA call per document over slices of the row, so attention costs sum(l_i^2), not the
  (sum l_i)^2 of SDPA with a block-diagonal mask (which transformers would otherwise build).
  PyTorch's flex_attention has no CPU backward (torch 2.13), so it is not an option here.

Without ``cu_seq_lens`` (unpacked batches), or with a padding ``attention_mask``, it is plain
SDPA. Documents are still kept apart when a batch carries only ``position_ids`` that restart per
document (the row layout of ``collate_rows``): they are read from the restarts.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

PACKED_SDPA = "fastchat_lite_packed_sdpa"


def document_bounds(
    cu_seq_lens: Any | None, position_ids: Any | None, batch: int, length: int
) -> list[list[tuple[int, int]]]:
    """``(start, end)`` of every document, per row of the batch.

    ``cu_seq_lens`` index the batch flattened to one row (flash-attn varlen), so they are only
    accepted for a batch of one row; without them, a document starts wherever ``position_ids``
    do not continue the previous position (how transformers detects packing).
    """
    if cu_seq_lens is not None:
        if batch != 1:
            raise ValueError(f"cu_seq_lens need a flattened batch of 1 row, got {batch} rows")
        cuts = [int(c) for c in cu_seq_lens.tolist()]
        if cuts[0] != 0 or cuts[-1] != length:
            raise ValueError(f"cu_seq_lens {cuts[:3]}...{cuts[-1:]} do not cover {length} tokens")
        return [list(pairwise(cuts))]
    if position_ids is None:
        return [[(0, length)] for _ in range(batch)]
    import torch

    positions = position_ids.expand(batch, -1)
    starts = torch.diff(positions, dim=-1) != 1
    rows = []
    for r in range(batch):
        cuts = [0, *(starts[r].nonzero().flatten() + 1).tolist(), length]
        rows.append(list(pairwise(cuts)))
    return rows


def packed_sdpa_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: Any | None = None,
    cu_seq_lens_k: Any | None = None,
    position_ids: Any | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """The attention function transformers calls for :data:`PACKED_SDPA` (same contract as sdpa).

    ``query``: (batch, heads, tokens, head_dim); ``key``/``value`` may have fewer (GQA) heads.
    Returns (batch, tokens, heads, head_dim) and no attention weights.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward, use_gqa_in_sdpa

    batch, _, length, _ = query.shape
    if attention_mask is not None or length == 1 or key.shape[2] != length:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
            position_ids=position_ids, **kwargs,
        )  # fmt: skip
    if cu_seq_lens_k is not None and not torch.equal(cu_seq_lens_q, cu_seq_lens_k):
        raise ValueError("packed self-attention needs cu_seq_lens_q == cu_seq_lens_k")
    bounds = document_bounds(cu_seq_lens_q, position_ids, batch, length)
    groups = getattr(module, "num_key_value_groups", 1)
    gqa = {}
    if groups > 1:
        if use_gqa_in_sdpa(None, key, value):
            gqa = {"enable_gqa": True}
        else:
            from transformers.integrations.sdpa_attention import repeat_kv

            key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    rows = []
    for r, docs in enumerate(bounds):
        sizes = [e - s for s, e in docs]
        # split, not slices: its backward is one cat, where each slice's would zero-fill the row
        pieces = (t[r : r + 1].split(sizes, dim=2) for t in (query, key, value))
        parts = [
            sdpa(q, k, v, dropout_p=dropout, scale=scaling, is_causal=q.shape[2] > 1, **gqa)
            for q, k, v in zip(*pieces, strict=True)
        ]
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))
    out = rows[0] if batch == 1 else torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None


def _packed_mask(attention_mask: Any | None = None, **kwargs: Any) -> Any | None:
    """No mask at all unless a padding mask was given: the documents are cut in the attention."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(attention_mask=attention_mask, **kwargs)


def register_packed_attention() -> str:
    """Register :data:`PACKED_SDPA` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_forward)
    AttentionMaskInterface.register(PACKED_SDPA, _packed_mask)
    return PACKED_SDPA


def use_packed_attention(model: Any) -> str:
    """Switch an sdpa model to :data:`PACKED_SDPA`; returns the implementation now in use.

    flash_attention_2 already runs varlen from ``cu_seq_lens``; eager and models with a sliding
    window keep transformers' own (block-diagonal) masks.
    """
    current = model.config._attn_implementation
    if current != "sdpa" or getattr(model.config, "sliding_window", None):
        return current
    model.set_attn_implementation(register_packed_attention())
    return PACKED_SDPA
