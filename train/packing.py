"""Which samples go into which row, micro-batch and optimizer step: the data plan.

The plan of an epoch is a pure function of (sample lengths, seed, epoch, batch shape), so every
process computes the same plan without talking to the others, and a resumed run finds its
place again from just (epoch, step in epoch). A step holds ``world_size *
gradient_accumulation_steps`` micro-batch slots; rank ``r`` takes slots ``r*accum ..
(r+1)*accum - 1``. A slot may be empty (the last step of an epoch): that rank then runs a
one-pad-token micro-batch with no trained token, so collective calls stay matched.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Row = list[int]  # sample indices sharing one row (one sample when not packing)
MicroBatch = list[Row]
Step = list[MicroBatch]


@dataclass(frozen=True)
class BatchShape:
    """How rows become steps; the fields of TrainConfig that change the data plan."""

    max_length: int
    batch_size: int  # rows per micro-batch
    accumulation: int
    world_size: int = 1
    packing: bool = True
    group_by_length: bool = True

    @property
    def slots(self) -> int:
        return self.world_size * self.accumulation


def pack_rows(lengths: Sequence[int], order: Sequence[int], max_length: int) -> list[Row]:
    """Best-fit decreasing: each sample goes into the fullest row it still fits in.

    Rows come out in creation order; ties keep ``order``, so a shuffled order gives a
    different (still deterministic) packing each epoch.
    """
    by_length = sorted(order, key=lambda i: -lengths[i])  # stable: keeps shuffle among ties
    rows: list[Row] = []
    free: list[tuple[int, int]] = []  # (remaining capacity, row id), sorted
    for index in by_length:
        need = lengths[index]
        pos = bisect.bisect_left(free, (need, -1))
        if pos < len(free):
            remaining, row_id = free.pop(pos)
        else:
            remaining, row_id = max_length, len(rows)
            rows.append([])
        rows[row_id].append(index)
        if remaining - need > 0:
            bisect.insort(free, (remaining - need, row_id))
    return rows


def _grouped_rows(lengths: Sequence[int], order: np.ndarray, shape: BatchShape, rng) -> list[Row]:
    """Length grouping (HF's LengthGroupedSampler idea): sort inside megabatches of 50 batches."""
    mega = 50 * shape.batch_size
    rows: list[Row] = []
    batches: list[list[Row]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega].tolist(), key=lambda i: -lengths[i])
        for b in range(0, len(chunk), shape.batch_size):
            batches.append([[i] for i in chunk[b : b + shape.batch_size]])
    for b in rng.permutation(len(batches)):
        rows.extend(batches[b])
    return rows


def plan_epoch(lengths: Sequence[int], shape: BatchShape, seed: int, epoch: int) -> list[Step]:
    """The optimizer steps of one epoch (see the module docstring for the layout)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if shape.packing:
        rows = pack_rows(lengths, order.tolist(), shape.max_length)
        rows = [rows[i] for i in rng.permutation(len(rows))]
    elif shape.group_by_length:
        rows = _grouped_rows(lengths, order, shape, rng)
    else:
        rows = [[int(i)] for i in order]
    micro = [rows[i : i + shape.batch_size] for i in range(0, len(rows), shape.batch_size)]
    steps = [micro[i : i + shape.slots] for i in range(0, len(micro), shape.slots)]
    if steps and len(steps[-1]) < shape.slots:
        steps[-1] = steps[-1] + [[] for _ in range(shape.slots - len(steps[-1]))]
    return steps


def rank_slots(step: Step, rank: int, accumulation: int) -> list[MicroBatch]:
    return step[rank * accumulation : (rank + 1) * accumulation]


class DataPlan:
    """Epoch plans (cached) and the global step <-> (epoch, step in epoch) bookkeeping."""

    def __init__(self, lengths: Sequence[int], shape: BatchShape, seed: int) -> None:
        self.lengths = list(lengths)
        self.shape = shape
        self.seed = seed
        self._cache: dict[int, list[Step]] = {}

    def epoch(self, epoch: int) -> list[Step]:
        if epoch not in self._cache:
            self._cache = {epoch: plan_epoch(self.lengths, self.shape, self.seed, epoch)}
        return self._cache[epoch]

    def steps_in_epoch(self, epoch: int) -> int:
        return len(self.epoch(epoch))

    def total_steps(self, num_train_epochs: float, max_steps: int) -> int:
        if max_steps > 0:
            return max_steps
        whole = int(num_train_epochs)
        total = sum(self.steps_in_epoch(e) for e in range(whole))
        fraction = num_train_epochs - whole
        if fraction > 0:
            total += max(1, round(fraction * self.steps_in_epoch(whole)))
        return max(total, 1)
