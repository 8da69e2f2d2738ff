"""Rows of samples -> tensors: ``input_ids``, ``targets`` (already shifted) and ``position_ids``.

Two layouts:

- :func:`collate_packed` (packing): the micro-batch's rows are flattened into one row of whole
  conversations, no padding, with ``cu_seq_lens`` (cumulative conversation lengths, flash-attn's
  varlen convention) and ``position_ids`` restarting at 0 per conversation. The model's attention
  only computes within-conversation blocks (``train.attention``: flash-attn varlen, or one SDPA
  call per conversation), so packed conversations never attend to each other
  (tests/test_train_packing.py checks the loss and gradients equal the unpacked ones).
- :func:`collate_rows` (no packing; also FastChat-style pad-to-max_length): one row per entry,
  padded at the end. Pads continue the last sample's positions: causal attention means no real
  token ever sees a pad, and an unpacked batch keeps SDPA's fast ``is_causal`` path. Rows holding
  several samples still work (transformers builds a block-diagonal mask from the restarting
  ``position_ids``), but cost the full row squared in attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastchat_lite.masking import IGNORE_INDEX
from train.dataset import Sample


def collate_rows(
    rows: Sequence[Sequence[Sample]], pad_id: int, pad_to: int | None = None
) -> dict[str, object]:
    """Tensors for a micro-batch of rows; an empty ``rows`` gives one pad token, no loss.

    ``pad_to`` pads every row to that length (FastChat's pad-to-max_length); by default rows
    are padded to the longest row of the micro-batch.
    """
    import torch

    if not rows:
        rows = [[]]
    built = []
    for row in rows:
        ids = [s.input_ids for s in row] or [np.asarray([pad_id], dtype=np.int64)]
        targets = [s.targets for s in row] or [np.asarray([IGNORE_INDEX], dtype=np.int64)]
        positions = [np.arange(len(a), dtype=np.int64) for a in ids]
        built.append((np.concatenate(ids), np.concatenate(targets), np.concatenate(positions)))
    width = max(pad_to or 0, max(len(b[0]) for b in built))
    input_ids = np.full((len(built), width), pad_id, dtype=np.int64)
    targets = np.full((len(built), width), IGNORE_INDEX, dtype=np.int64)
    position_ids = np.zeros((len(built), width), dtype=np.int64)
    real = 0
    for r, (ids, tgt, pos) in enumerate(built):
        n = len(ids)
        input_ids[r, :n], targets[r, :n], position_ids[r, :n] = ids, tgt, pos
        position_ids[r, n:] = pos[-1] + 1 + np.arange(width - n)  # pads continue the last sample
        real += sum(len(s) for s in rows[r])
    return {
        "input_ids": torch.from_numpy(input_ids),
        "targets": torch.from_numpy(targets),
        "position_ids": torch.from_numpy(position_ids),
        "real_tokens": real,
        "trained_tokens": int((targets != IGNORE_INDEX).sum()),
    }


def collate_packed(rows: Sequence[Sequence[Sample]], pad_id: int) -> dict[str, object]:
    """One flattened row of every sample of ``rows`` plus ``cu_seq_lens``/``max_length``.

    ``rows`` keeps the data plan's meaning (each row holds up to max_length tokens), so a packed
    micro-batch has the same tokens as ``collate_rows`` would give it, minus the padding. An
    empty ``rows`` gives one pad token with no loss.
    """
    import torch

    samples = [s for row in rows for s in row]
    if not samples:
        empty = np.asarray([pad_id], dtype=np.int64)
        samples = [Sample(empty, np.asarray([IGNORE_INDEX], dtype=np.int64), 0)]
    lengths = [len(s) for s in samples]
    input_ids = np.concatenate([s.input_ids for s in samples])[None]
    targets = np.concatenate([s.targets for s in samples])[None]
    positions = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])[None]
    cu_seq_lens = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return {
        "input_ids": torch.from_numpy(input_ids),
        "targets": torch.from_numpy(targets),
        "position_ids": torch.from_numpy(positions),
        "cu_seq_lens": torch.from_numpy(cu_seq_lens),
        "max_length": max(lengths),
        "real_tokens": sum(len(s) for row in rows for s in row),
        "trained_tokens": int((targets != IGNORE_INDEX).sum()),
    }
