"""``data clean``: raw ShareGPT dump -> clean ShareGPT JSONL, every drop counted.

The parent process streams records from the input (:func:`fastchat_lite.io.iter_records`),
hands chunks to worker processes, and receives them back *in input order*: each record is
either a ready-to-write JSON line plus a content hash, or a drop reason. Duplicates are
decided in the parent (first occurrence wins), so the output does not depend on ``--workers``.
At most ``4 * workers`` chunks are in flight, so memory stays flat however big the dump is.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

from data_prep.drops import DropLog, DropReason, Tally
from data_prep.filters import (
    DEFAULT_BLOCKED_PHRASES,
    PhraseMatcher,
    detect_language,
    load_phrases,
)
from data_prep.html import html_to_markdown, looks_like_html
from data_prep.normalize import (
    RecordDropped,
    check_turns,
    raw_turns,
    readable_record_id,
    strip_noise,
    trim_ends,
)
from fastchat_lite.errors import InputFileError
from fastchat_lite.io import RawRecord, atomic_write, iter_records


@dataclass
class CleanConfig:
    """Options of ``fastchat-lite data clean`` (flags, YAML keys and defaults in one place)."""

    workers: int = field(
        default=1, metadata={"help": "worker processes converting HTML (0 = one per CPU)"}
    )
    max_chars: int = field(
        default=1_000_000, metadata={"help": "drop a record with a message longer than this"}
    )
    min_turns: int = field(default=2, metadata={"help": "drop conversations with fewer turns"})
    min_chars: int = field(
        default=1, metadata={"help": "drop conversations with fewer characters in all"}
    )
    lang: str | None = field(
        default=None, metadata={"help": "keep only these languages, e.g. 'en,zh' (langdetect)"}
    )
    blocked_phrases: list[str] = field(
        default_factory=list, metadata={"help": "extra phrases that drop a gpt turn's record"}
    )
    blocked_phrases_file: str | None = field(
        default=None, metadata={"help": "file of phrases (one a line) replacing the defaults"}
    )
    chunk_size: int = field(default=32, metadata={"help": "records per work unit"})

    def phrases(self) -> list[str]:
        base = (
            load_phrases(self.blocked_phrases_file)
            if self.blocked_phrases_file
            else list(DEFAULT_BLOCKED_PHRASES)
        )
        return base + list(self.blocked_phrases)

    def languages(self) -> frozenset[str] | None:
        if not self.lang:
            return None
        return frozenset(c.strip().lower() for c in self.lang.replace(" ", ",").split(",") if c)


class Outcome(NamedTuple):
    """One input record after cleaning: a JSON line + hash, or a drop reason."""

    index: int
    record_id: str | None
    line: str | None
    digest: bytes | None
    reason: str | None = None
    detail: str = ""


class Cleaner:
    """Cleans one record at a time; built once per worker process."""

    def __init__(self, config: CleanConfig, phrases: list[str]) -> None:
        self.config = config
        self.blocked = PhraseMatcher(phrases)
        self.languages = config.languages()

    def clean(self, raw: RawRecord) -> Outcome:
        rid = None
        try:
            rid = readable_record_id(raw)
            turns = self.normalise(raw_turns(raw.value))
            self.filter(turns)
        except RecordDropped as drop:
            return Outcome(raw.index, rid, None, None, drop.reason.value, drop.detail)
        line = json.dumps({"id": rid, "conversations": turns}, ensure_ascii=False)
        return Outcome(raw.index, rid, line + "\n", content_digest(turns))

    def normalise(self, turns: list[dict[str, str]]) -> list[dict[str, str]]:
        limit = self.config.max_chars
        for i, turn in enumerate(turns):
            if len(turn["value"]) > limit:
                raise RecordDropped(
                    DropReason.MESSAGE_TOO_LONG,
                    f"turn {i} has {len(turn['value']):,} characters (--max-chars {limit:,})",
                )
            turn["value"] = self.convert_value(turn["from"], turn["value"], i)
        turns = trim_ends(turns)
        check_turns(turns)
        return turns

    def convert_value(self, role: str, text: str, i: int) -> str:
        text = strip_noise(text)
        if role != "gpt" or "<" not in text or not looks_like_html(text):
            return text  # human turns are plain text, whatever they contain
        try:
            return html_to_markdown(text)
        except Exception as exc:  # bs4 raises several types; the record is counted
            raise RecordDropped(DropReason.HTML_ERROR, f"turn {i}: {exc!r}"[:300]) from None

    def filter(self, turns: list[dict[str, str]]) -> None:
        config = self.config
        total = sum(len(t["value"]) for t in turns)
        if len(turns) < config.min_turns or total < config.min_chars:
            raise RecordDropped(
                DropReason.TOO_SHORT,
                f"{len(turns)} turns, {total} characters "
                f"(--min-turns {config.min_turns}, --min-chars {config.min_chars})",
            )
        for i, turn in enumerate(turns):
            if turn["from"] == "gpt":
                hit = self.blocked.search(turn["value"])
                if hit:
                    raise RecordDropped(DropReason.BLOCKED_PHRASE, f"turn {i}: {hit!r}")
        if self.languages is not None:
            lang = detect_language("\n".join(t["value"] for t in turns))
            if lang not in self.languages:
                raise RecordDropped(DropReason.WRONG_LANGUAGE, f"detected {lang!r}")


def content_digest(turns: list[dict[str, str]]) -> bytes:
    """Hash of the normalised conversation (roles + texts): equal hash = exact duplicate."""
    h = hashlib.blake2b(digest_size=16)
    for turn in turns:
        h.update(turn["from"].encode())
        h.update(b"\x00")
        h.update(turn["value"].encode("utf-8"))
        h.update(b"\x01")
    return h.digest()


# One Cleaner per worker process, set by the pool initializer (not shared state: each
# process has its own copy, built from the same config).
_WORKER_CLEANER: Cleaner | None = None


def _init_worker(config: CleanConfig, phrases: list[str]) -> None:
    global _WORKER_CLEANER
    _WORKER_CLEANER = Cleaner(config, phrases)


def _clean_chunk(chunk: list[RawRecord]) -> list[Outcome]:
    assert _WORKER_CLEANER is not None
    return [_WORKER_CLEANER.clean(raw) for raw in chunk]


def map_ordered(
    fn: Callable[[list[Any]], list[Any]],
    chunks: Iterable[list[Any]],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
) -> Iterator[Any]:
    """``fn`` over chunks in ``workers`` processes, results in input order, bounded in flight."""
    if workers <= 1:
        initializer(*initargs)
        for chunk in chunks:
            yield from fn(chunk)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(workers, initializer, initargs) as pool:
        pending: deque[Any] = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(fn, (chunk,)))
            if len(pending) >= 4 * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


class _GuardedReader:
    """Records of the input; a JSON list that breaks off mid-way ends the stream cleanly.

    The break is remembered in ``broken`` (index, message) so it is counted as
    ``unreadable_rest``; a file unreadable from its first record still raises, and so does a
    pretty-printed top-level object (its first "line" ``{`` is no JSONL record).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = iter_records(path)
        self.broken: tuple[int, str] | None = None
        self.parsed = 0
        self.seen = 0

    def __iter__(self) -> Iterator[RawRecord]:
        try:
            for raw in self.records:
                if self.seen == 0 and raw.error is not None and _opens_json_object(self.path):
                    raise InputFileError(
                        f"{self.path}: the top level is one JSON object; expected a JSON list "
                        "of records or JSON lines (one record per line)"
                    )
                self.seen += 1
                self.parsed += raw.error is None
                yield raw
        except InputFileError as exc:
            if self.seen == 0:
                raise
            self.broken = (self.seen, str(exc))


def _opens_json_object(path: Path) -> bool:
    """True when the file's first line is a lone ``{``: a pretty-printed object, not JSONL."""
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                return line.strip().lstrip(b"\xef\xbb\xbf") == b"{"
    return False


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def clean_file(
    in_path: str | Path,
    out_path: str | Path,
    config: CleanConfig,
    drops: DropLog,
    progress: bool = True,
) -> Tally:
    """Clean ``in_path`` into ``out_path`` (atomic); drops go to ``drops``; returns the tally."""
    from tqdm import tqdm

    tally = drops.tally
    reader = _GuardedReader(Path(in_path))
    seen: dict[bytes, str] = {}
    args = (config, config.phrases())
    bar = tqdm(desc="clean", unit=" conv", disable=None if progress else True, file=sys.stderr)
    with atomic_write(out_path) as out, bar:
        chunks = chunked(reader, max(1, config.chunk_size))
        workers = config.workers if config.workers > 0 else (os.cpu_count() or 1)
        for outcome in map_ordered(_clean_chunk, chunks, workers, _init_worker, args):
            tally.read += 1
            bar.update()
            if outcome.reason is not None:
                drops.drop(outcome.index, outcome.record_id, outcome.reason, outcome.detail)
            elif outcome.digest in seen:
                first = seen[outcome.digest]
                drops.drop(outcome.index, outcome.record_id, DropReason.DUPLICATE, f"of {first}")
            else:
                seen[outcome.digest] = outcome.record_id or ""
                out.write(outcome.line)
                tally.kept += 1
        if reader.seen and not reader.parsed:
            raise InputFileError(f"{in_path}: no record could be parsed as JSON")
    if reader.broken is not None:
        index, message = reader.broken
        drops.drop(index, None, DropReason.UNREADABLE_REST, message)
        tally.notes["warning"] = f"input broke off after record {index - 1}: {message}"
    return tally
