"""Rows of samples -> tensors: ``input_ids``, ``targets`` (already shifted) and ``position_ids``.

``position_ids`` restart at 0 for every sample of a packed row. transformers 5 reads that as a
packed batch when no ``attention_mask`` is passed: SDPA/eager get a block-diagonal causal mask,
flash-attn 2 gets ``cu_seqlens`` (varlen), so packed conversations never attend to each other
(tests/test_train_packing.py checks the loss equals the unpacked one). Padding goes at the end
of a row and continues the last sample's positions: causal attention means no real token ever
sees a pad, and an unpacked batch keeps SDPA's fast ``is_causal`` path.
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
