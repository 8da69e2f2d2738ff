"""``data clean``: raw ShareGPT dump -> clean ShareGPT JSONL, every drop counted.

The parent process streams records from the input (:func:`fastchat_lite.io.iter_records`),
hands chunks to worker processes, and receives them back *in input order*: each record is
either a ready-to-write JSON line plus a content hash (and, with ``--near-dup``, a MinHash
signature), or a drop reason. Duplicates are decided in the parent (first occurrence wins),
so the output does not depend on ``--workers``. At most ``4 * workers`` chunks are in flight,
so memory stays flat however big the dump is.

Kept lines, drops and duplicate hashes go to ``OUT.partial/`` (:mod:`data_prep.checkpoint`),
committed every ``--checkpoint-every`` records, so ``--resume`` continues a killed run. At the
end the kept lines become ``OUT`` (renamed, or filtered by :mod:`data_prep.near_dup` first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from data_prep.checkpoint import WorkDir, input_fingerprint
from data_prep.drops import DropLog, DropReason, Tally
from data_prep.filters import (
    DEFAULT_BLOCKED_PHRASES,
    PhraseMatcher,
    detect_language,
    load_phrases,
)
from data_prep.html import html_to_markdown, looks_like_html
from data_prep.normalize import (
    DUPLICATE_ID_ACTIONS,
    IdRegistry,
    RecordDropped,
    check_turns,
    duplicate_ids_field,
    raw_turns,
    readable_record_id,
    remove_control_chars,
    strip_noise,
    trim_ends,
)
from data_prep.reader import GuardedReader
from data_prep.ui_chrome import (
    DEFAULT_UI_ERRORS,
    UiErrorMatcher,
    strip_ui_chrome,
    trim_final_ui_error,
)
from data_prep.workers import chunked, map_ordered
from fastchat_lite.config import check_ranges
from fastchat_lite.errors import FastChatLiteError, InputFileError
from fastchat_lite.io import RawRecord


@dataclass
class CleanConfig:
    """Options of ``fastchat-lite data clean`` (flags, YAML keys and defaults in one place)."""

    workers: int = field(
        default=1,
        metadata={"help": "worker processes converting HTML (0 = one per CPU)", "min": 0},
    )
    max_chars: int = field(
        default=1_000_000,
        metadata={"help": "drop a record with a message longer than this", "min": 1},
    )
    min_turns: int = field(
        default=2, metadata={"help": "drop conversations with fewer turns", "min": 0}
    )
    min_chars: int = field(
        default=1, metadata={"help": "drop conversations with fewer characters in all", "min": 0}
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
    ui_errors: list[str] = field(
        default_factory=list,
        metadata={"help": "extra ChatGPT-UI error replies (whole reply; * = any text)"},
    )
    ui_errors_file: str | None = field(
        default=None,
        metadata={"help": "file of UI error replies (one a line) replacing the defaults"},
    )
    near_dup: float | None = field(
        default=None,
        metadata={
            "help": "also drop near-duplicates: MinHash Jaccard threshold, e.g. 0.9 (of each "
            "group of similar conversations the longest is kept; needs datasketch)",
            "gt": 0,
            "max": 1,
        },
    )
    duplicate_ids: str = duplicate_ids_field()
    chunk_size: int = field(default=32, metadata={"help": "records per work unit", "min": 1})
    checkpoint_every: int = field(
        default=2000,
        metadata={
            "help": "records between commits to OUT.partial/ (what --resume continues)",
            "min": 1,
        },
    )
    resume: bool = field(
        default=False,
        metadata={"help": "continue an interrupted run from OUT.partial/ (same input, options)"},
    )

    def validate(self) -> None:
        """Raise a FastChatLiteError naming the option for values that cannot run."""
        check_ranges(self, "data clean")  # the CLI checked already; this is for API callers
        if self.duplicate_ids not in DUPLICATE_ID_ACTIONS:
            raise FastChatLiteError(f"--duplicate-ids {self.duplicate_ids!r}: suffix or drop")
        self.ui_error_phrases()  # an unreadable --ui-errors-file fails here, not in a worker

    def output_options(self, phrases: list[str]) -> dict[str, Any]:
        """The options that decide the output (not workers, chunking, checkpoints, resume):
        a resumed run must use the same."""
        run_only = {"workers", "chunk_size", "checkpoint_every", "resume"}
        lists = {"blocked_phrases": phrases, "ui_errors": self.ui_error_phrases()}
        values: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in run_only and f.name not in lists and not f.name.endswith("_file")
        }
        values["lang"] = sorted(self.languages() or [])
        for name, items in lists.items():  # the lists in effect (defaults or file, + extras)
            text = "\n".join(items).encode()
            values[name] = "blake2b:" + hashlib.blake2b(text, digest_size=8).hexdigest()
        return values

    def phrases(self) -> list[str]:
        base = (
            load_phrases(self.blocked_phrases_file)
            if self.blocked_phrases_file
            else list(DEFAULT_BLOCKED_PHRASES)
        )
        return base + list(self.blocked_phrases)

    def ui_error_phrases(self) -> list[str]:
        base = (
            load_phrases(self.ui_errors_file, "ui-errors")
            if self.ui_errors_file
            else list(DEFAULT_UI_ERRORS)
        )
        return base + list(self.ui_errors)

    def languages(self) -> frozenset[str] | None:
        if not self.lang:
            return None
        return frozenset(c.strip().lower() for c in self.lang.replace(" ", ",").split(",") if c)


class Outcome(NamedTuple):
    """One input record after cleaning: a JSON line + hash, or a drop reason.

    ``end``: the record's end in the input (bytes); ``chars``: characters of all turns;
    ``signature``: MinHash signature with ``--near-dup``; ``trimmed``: the reason a kept
    record lost its final exchange (``ui_error``); ``control_chars``: characters removed.
    """

    index: int
    record_id: str | None
    line: str | None
    digest: bytes | None
    reason: str | None = None
    detail: str = ""
    end: int | None = None
    chars: int = 0
    signature: bytes | None = None
    trimmed: str | None = None
    control_chars: int = 0


class Cleaner:
    """Cleans one record at a time; built once per worker process."""

    def __init__(self, config: CleanConfig, phrases: list[str]) -> None:
        self.config = config
        self.blocked = PhraseMatcher(phrases)
        self.languages = config.languages()
        self.ui_errors = UiErrorMatcher(config.ui_error_phrases())
        self.signer = None
        if config.near_dup is not None:
            from data_prep.near_dup import Signer

            self.signer = Signer()

    def clean(self, raw: RawRecord) -> Outcome:
        rid, trimmed = None, False
        self.control_chars = 0
        try:
            rid = readable_record_id(raw)
            turns = self.normalise(raw_turns(raw.value))
            trimmed = trim_final_ui_error(turns, self.ui_errors)
            self.filter(turns)
        except RecordDropped as drop:
            reason, detail = drop.reason, drop.detail
            if trimmed and reason is DropReason.TOO_SHORT:  # too short once the error was cut
                reason, detail = DropReason.UI_ERROR, f"final UI error reply cut, then {detail}"
            return Outcome(raw.index, rid, None, None, reason.value, detail, raw.end)
        line = json.dumps({"id": rid, "conversations": turns}, ensure_ascii=False)
        texts = [t["value"] for t in turns]
        signature = self.signer.signature(texts) if self.signer is not None else None
        chars = sum(map(len, texts))
        kept = Outcome(
            raw.index, rid, line + "\n", content_digest(turns), None, "", raw.end, chars, signature
        )
        kept = kept._replace(control_chars=self.control_chars)
        return kept._replace(trimmed=DropReason.UI_ERROR.value) if trimmed else kept

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
        text, removed = remove_control_chars(text)
        self.control_chars += removed
        text = strip_noise(text)
        if role != "gpt":
            return text  # human turns are plain text, whatever they contain
        if "<" in text and looks_like_html(text):
            try:
                text = html_to_markdown(text)
            except Exception as exc:  # bs4 raises several types; the record is counted
                raise RecordDropped(DropReason.HTML_ERROR, f"turn {i}: {exc!r}"[:300]) from None
        return strip_ui_chrome(text)

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


def clean_file(
    in_path: str | Path,
    out_path: str | Path,
    config: CleanConfig,
    drops: DropLog,
    progress: bool = True,
) -> Tally:
    """Clean ``in_path`` into ``out_path`` (atomic); drops go to ``drops``; returns the tally.

    Progress is committed to ``OUT.partial/`` as it goes; with ``config.resume`` an interrupted
    run continues from its last commit, and ``out_path`` and the drops come out byte for byte
    as an uninterrupted run's. Raises :class:`~data_prep.checkpoint.ResumeError` when the work
    dir was made from another input or other options, :class:`InputFileError` when the input
    as a whole is unreadable. ``OUT.partial/`` is removed after success and after an
    unreadable input, kept after any other failure (for ``--resume``).
    """
    config.validate()
    source = Path(in_path)
    if not source.is_file():
        raise InputFileError(f"{source}: no such file")
    if config.near_dup is not None:
        from data_prep.near_dup import load_datasketch

        load_datasketch()  # fail before any work; forked workers inherit the import
    phrases = config.phrases()
    work = WorkDir(out_path)
    fingerprints = {"input": input_fingerprint(source), "options": config.output_options(phrases)}
    note = work.open(fingerprints, config.resume, drops)
    if note:
        print(f"fastchat-lite: {note}", file=sys.stderr)
    try:
        reader = _clean_records(source, work, config, phrases, drops, progress)
    except InputFileError:
        work.discard()  # the whole input is unreadable: nothing worth resuming
        raise
    if config.near_dup is not None:
        from data_prep.near_dup import remove_near_duplicates

        remove_near_duplicates(work, out_path, config.near_dup, drops)
    else:
        work.publish(out_path)
    work.discard()
    if reader.broken is not None:
        index, message = reader.broken
        drops.drop(index, None, DropReason.UNREADABLE_REST, message)
        drops.tally.notes["warning"] = f"input broke off after record {index - 1}: {message}"
    return drops.tally


def _keep(work: WorkDir, tally: Tally, ids: IdRegistry, outcome: Outcome, drops: DropLog) -> None:
    """Keep a cleaned record that is no exact duplicate, under an id not used before (or
    drop it as ``duplicate_id``, as ``--duplicate-ids`` says)."""
    rid = outcome.record_id or ""
    new_id = ids.claim(rid)
    if new_id is None:
        detail = f"id {rid!r} is taken by an earlier kept record"
        work.drop(drops, outcome.index, rid, DropReason.DUPLICATE_ID, detail)
        return
    line = outcome.line
    if new_id != rid:  # the line starts with the id (json.dumps keeps key order)
        old_head, new_head = (f'{{"id": {json.dumps(x, ensure_ascii=False)}' for x in (rid, new_id))
        line = new_head + line[len(old_head) :]
        tally.fixed["duplicate_ids_suffixed"] += 1
    work.keep(line, outcome.digest, new_id, outcome.index, outcome.chars, outcome.signature)
    tally.kept += 1
    tally.fixed["control_chars_removed"] += outcome.control_chars
    if outcome.trimmed:
        tally.trimmed[outcome.trimmed] += 1


def _clean_records(
    source: Path,
    work: WorkDir,
    config: CleanConfig,
    phrases: list[str],
    drops: DropLog,
    progress: bool,
) -> GuardedReader:
    """Every record from the work dir's commit on: cleaned in workers, dropped or kept in
    ``work``, committed every ``checkpoint_every`` records and at the end."""
    from tqdm import tqdm

    tally = drops.tally
    reader = GuardedReader(source, work.offset, work.records)
    seen = work.seen
    offset, next_commit = work.offset, tally.read + config.checkpoint_every
    bar = tqdm(
        desc="clean",
        total=source.stat().st_size,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=None if progress else True,
        file=sys.stderr,
    )
    chunks = chunked(reader, max(1, config.chunk_size))
    workers = config.workers if config.workers > 0 else (os.cpu_count() or 1)
    outcomes = map_ordered(_clean_chunk, chunks, workers, _init_worker, (config, phrases))
    ids = IdRegistry(config.duplicate_ids, seen.values())
    for name in ("control_chars_removed", "duplicate_ids_suffixed"):
        tally.fixed.setdefault(name, 0)  # in the report even when 0
    # closing(): on an error or a signal the pool is terminated now, not when collected
    with bar, contextlib.closing(outcomes):
        for outcome in outcomes:
            tally.read += 1
            bar.update(outcome.end - offset)
            bar.set_postfix_str(f"{tally.read:,} conv", refresh=False)
            offset = outcome.end
            if outcome.reason is not None:
                work.drop(drops, outcome.index, outcome.record_id, outcome.reason, outcome.detail)
            elif outcome.digest in seen:
                detail = f"of {seen[outcome.digest]}"
                work.drop(drops, outcome.index, outcome.record_id, DropReason.DUPLICATE, detail)
            else:
                _keep(work, tally, ids, outcome, drops)
            if tally.read >= next_commit:
                work.commit(offset, tally.read, drops)
                next_commit = tally.read + config.checkpoint_every
    unparsed = sum(
        tally.dropped[r.value] for r in (DropReason.INVALID_JSON, DropReason.INVALID_UTF8)
    )
    if tally.read and tally.read == unparsed:
        raise InputFileError(f"{source}: no record could be parsed as JSON")
    work.commit(offset, tally.read, drops)
    return reader
