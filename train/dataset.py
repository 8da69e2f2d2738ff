"""Read training files and turn each conversation into ids + next-token labels, counting drops.

Labels are shifted here, per sample (``target[t]`` is the token that follows ``input_ids[t]``),
so packing several samples into one row can never make the last token of one conversation
predict the first token of the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastchat_lite.errors import ConversationError, NoTrainableTokensError
from fastchat_lite.io import iter_records
from fastchat_lite.masking import IGNORE_INDEX, encode_conversation


@dataclass
class Sample:
    """One conversation: ``input_ids`` and ``targets`` (-100 = no loss), same length."""

    input_ids: np.ndarray
    targets: np.ndarray
    num_trained: int
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class DataStats:
    """What happened to every record; printed in the run summary, never silent."""

    records: int = 0
    kept: int = 0
    unreadable: int = 0  # not JSON / not UTF-8
    malformed: int = 0  # ConversationError (bad roles, shape)
    no_trainable: int = 0  # NoTrainableTokensError (after truncation or no reply at all)
    truncated: int = 0  # kept, but trailing turns dropped or ids cut at max_length
    tokens: int = 0
    trained_tokens: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, reason: str, where: str) -> None:
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < 3:
            bucket.append(where)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "examples"} | {
            "examples": self.examples
        }


def encode_sample(record: Any, tokenizer: Any, template: str, max_length: int) -> Sample:
    """Tokenize + mask one record and shift its labels; raises the core's errors."""
    encoded = encode_conversation(record, tokenizer, template, max_length)
    ids = np.asarray(encoded.input_ids, dtype=np.int64)
    targets = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    targets[:-1] = np.asarray(encoded.labels[1:], dtype=np.int64)
    return Sample(ids, targets, int((targets != IGNORE_INDEX).sum()), encoded.truncated)


def _iter_raw(paths: list[str]) -> Iterator[tuple[str, Any, str | None]]:
    for path in paths:
        for record in iter_records(path):
            yield f"{path}:{record.index}", record.value, record.error


_worker_tokenizer: Any = None


def _init_worker(tokenizer_dir: str) -> None:
    global _worker_tokenizer
    from fastchat_lite.model_loading import load_tokenizer

    _worker_tokenizer = load_tokenizer(tokenizer_dir)


def _encode_or_reason(
    record: Any, tokenizer: Any, template: str, max_length: int
) -> Sample | tuple[str, str]:
    try:
        return encode_sample(record, tokenizer, template, max_length)
    except NoTrainableTokensError as exc:
        return ("no_trainable", str(exc))
    except ConversationError as exc:
        return ("malformed", str(exc))


def _encode_in_worker(args: tuple[Any, str, int]) -> Sample | tuple[str, str]:
    record, template, max_length = args
    return _encode_or_reason(record, _worker_tokenizer, template, max_length)


def load_samples(
    paths: list[str],
    tokenizer: Any,
    template: str,
    max_length: int,
    *,
    num_workers: int = 0,
    tokenizer_dir: str | None = None,
    progress: bool = True,
) -> tuple[list[Sample], DataStats]:
    """All trainable samples of ``paths`` in file order, and counts of everything dropped."""
    from tqdm import tqdm

    stats = DataStats()
    raw = list(_iter_raw(paths))
    good = [(where, value) for where, value, error in raw if error is None]
    for where, _, error in raw:
        stats.records += 1
        if error is not None:
            stats.unreadable += 1
            stats.note("unreadable", f"{where}: {error}")
    jobs = ((value, template, max_length) for _, value in good)
    bar = tqdm(total=len(good), desc="tokenize", unit="conv", disable=not progress)
    if num_workers > 1 and tokenizer_dir:
        with ProcessPoolExecutor(
            num_workers, initializer=_init_worker, initargs=(tokenizer_dir,)
        ) as pool:
            results = list(pool.map(_encode_in_worker, jobs, chunksize=64))
        bar.update(len(good))
    else:
        results = []
        for value, tpl, length in jobs:
            results.append(_encode_or_reason(value, tokenizer, tpl, length))
            bar.update()
    bar.close()
    samples = []
    for (where, _), result in zip(good, results, strict=True):
        if isinstance(result, tuple):
            reason, message = result
            setattr(stats, reason, getattr(stats, reason) + 1)
            stats.note(reason, f"{where}: {message}")
            continue
        samples.append(result)
        stats.kept += 1
        stats.truncated += int(result.truncated)
        stats.tokens += len(result)
        stats.trained_tokens += result.num_trained
    return samples, stats
