"""Resumable ``data clean``: committed progress in a work dir beside the output.

``OUT.partial/`` holds what a run has done so far, never ``OUT`` itself:

* ``kept.jsonl``: cleaned lines in input order (exact duplicates already removed);
* ``drops.jsonl``: drop entries, exactly as the report lists them;
* ``seen.jsonl``: one ``[content digest (hex), id, input index, characters]`` per kept line:
  the exact-duplicate state, and what near-duplicate removal needs besides signatures;
* ``signatures.bin``: the MinHash signature of each kept line (with ``--near-dup``);
* ``state.json``: the last commit: input and option fingerprints, the input byte offset and
  record count reached, counts, and the size of each file above at that point.

A commit flushes and fsyncs the data files, then replaces ``state.json`` atomically, so the
state never points past what is on disk. A resumed run cuts each file back to its committed
size (whatever a killed run wrote after its last commit is discarded, never written twice),
replays the drops, reloads the duplicate hashes and reads on from the committed offset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import IO, Any

from data_prep.drops import DropLog, Tally
from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.io import write_json

STATE_VERSION = 1
DATA_FILES = ("kept.jsonl", "drops.jsonl", "seen.jsonl", "signatures.bin")


class ResumeError(FastChatLiteError):
    """``--resume`` cannot continue this work dir (other input, other options, damaged)."""


def input_fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time and a hash of the first MiB: a changed input is noticed."""
    stat = path.stat()
    with path.open("rb") as handle:
        head = hashlib.blake2b(handle.read(1 << 20), digest_size=16).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_blake2b": head}


class WorkDir:
    """The ``OUT.partial/`` of one run: append, commit, restore, publish, discard."""

    def __init__(self, out_path: str | Path) -> None:
        out = Path(out_path)
        self.path = out.with_name(out.name + ".partial")
        self.seen: dict[bytes, str] = {}  # content digest -> id of the kept record
        self.offset = 0  # input bytes covered by the last commit
        self.records = 0  # input records covered by the last commit
        self._fingerprints: dict[str, Any] = {}
        self._files: dict[str, IO[bytes]] = {}

    def open(self, fingerprints: dict[str, Any], resume: bool, drops: DropLog) -> str | None:
        """Start afresh, or with ``resume`` go on from the last commit (drops replayed into
        ``drops``, counts into its tally). Returns a note for the user, or None.

        Raises :class:`ResumeError` when the work dir was made from another input or other
        options, or is damaged; nothing is changed then.
        """
        self._fingerprints = fingerprints
        state_path = self.path / "state.json"
        if resume and state_path.is_file():
            self._restore(self._checked_state(state_path), drops)
            return f"resuming {self.path} at record {self.records:,}"
        note = None
        if self.path.exists():
            note = f"discarding {self.path} of an interrupted run (--resume continues one)"
        elif resume:
            note = f"nothing to resume in {self.path}: starting from the beginning"
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        self._files = {name: (self.path / name).open("wb") for name in DATA_FILES}
        self.commit(0, 0, drops)
        return note

    def _checked_state(self, state_path: Path) -> dict[str, Any]:
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ResumeError(f"{state_path} is unreadable ({exc}); {_START_OVER}") from None
        if state.get("version") != STATE_VERSION:
            raise ResumeError(f"{state_path} has another format version; {_START_OVER}")
        for key, other, same in (
            ("input", "from another input file", "the same input file"),
            ("options", "with other options", "the same options"),
        ):
            changed = _differences(state.get(key, {}), self._fingerprints[key])
            if changed:
                raise ResumeError(
                    f"{self.path} was started {other} ({changed}); resume with {same}, or "
                    f"{_START_OVER}"
                )
        for name in DATA_FILES:
            path = self.path / name
            if not path.is_file() or path.stat().st_size < state["files"][name]:
                raise ResumeError(f"{path} is missing or shorter than committed; {_START_OVER}")
        return state

    def _restore(self, state: dict[str, Any], drops: DropLog) -> None:
        for name in DATA_FILES:
            handle = (self.path / name).open("r+b")
            handle.truncate(state["files"][name])
            handle.seek(0, os.SEEK_END)
            self._files[name] = handle
        with (self.path / "drops.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                entry = json.loads(line)
                drops.drop(entry["index"], entry["id"], entry["reason"], entry["detail"])
        with (self.path / "seen.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                digest, record_id, _, _ = json.loads(line)
                self.seen[bytes.fromhex(digest)] = record_id
        tally = drops.tally
        tally.read, tally.kept = state["records"], state["kept"]
        for name, counts in state["counters"].items():
            getattr(tally, name).update(counts)
        if dict(tally.dropped) != state["dropped"] or len(self.seen) != tally.kept:
            raise ResumeError(f"{self.path}: counts do not match its files; {_START_OVER}")
        self.offset, self.records = state["offset"], state["records"]

    def drop(
        self, drops: DropLog, index: int, record_id: str | None, reason: str, detail: str
    ) -> None:
        drops.drop(index, record_id, reason, detail)
        entry = {"index": index, "id": record_id, "reason": str(reason), "detail": detail}
        self._files["drops.jsonl"].write(_json_line(entry))

    def keep(
        self,
        line: str,
        digest: bytes,
        record_id: str,
        index: int,
        chars: int,
        signature: bytes | None,
    ) -> None:
        self.seen[digest] = record_id
        self._files["kept.jsonl"].write(line.encode("utf-8"))
        self._files["seen.jsonl"].write(_json_line([digest.hex(), record_id, index, chars]))
        if signature is not None:
            self._files["signatures.bin"].write(signature)

    def commit(self, offset: int, records: int, drops: DropLog) -> None:
        """Make everything appended so far durable, then record it in ``state.json``."""
        sizes = {}
        for name, handle in self._files.items():
            handle.flush()
            os.fsync(handle.fileno())
            sizes[name] = handle.tell()
        state = {
            "version": STATE_VERSION,
            **self._fingerprints,
            "offset": offset,
            "records": records,
            "kept": drops.tally.kept,
            "dropped": dict(drops.tally.dropped),
            "counters": _other_counters(drops.tally),
            "files": sizes,
        }
        write_json(self.path / "state.json", state)
        self.offset, self.records = offset, records

    def kept_lines(self) -> IO[bytes]:
        """The committed ``kept.jsonl`` for reading (call after the final commit)."""
        self._close()
        return (self.path / "kept.jsonl").open("rb")

    def kept_index(self) -> tuple[list[str], list[int], list[int]]:
        """(ids, input indexes, characters) of the kept lines, in order."""
        ids, indexes, chars = [], [], []
        with (self.path / "seen.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                _, record_id, index, length = json.loads(line)
                ids.append(record_id)
                indexes.append(index)
                chars.append(length)
        return ids, indexes, chars

    def signatures_path(self) -> Path:
        return self.path / "signatures.bin"

    def publish(self, out_path: str | Path, name: str = "kept.jsonl") -> None:
        """Rename the work dir's file ``name`` (complete and fsynced) to ``out_path``."""
        self._close()
        os.replace(self.path / name, out_path)

    def discard(self) -> None:
        self._close()
        shutil.rmtree(self.path, ignore_errors=True)

    def _close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files = {}


_START_OVER = "run without --resume to start over"


def _other_counters(tally: Tally) -> dict[str, dict[str, int]]:
    """Counters of the tally besides ``dropped`` (rebuilt by replaying the drops)."""
    return {
        f.name: dict(getattr(tally, f.name))
        for f in dataclasses.fields(tally)
        if f.name != "dropped" and isinstance(getattr(tally, f.name), Counter)
    }


def _json_line(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")


def _differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    keys = sorted(set(before) | set(now))
    return ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys
                     if before.get(k) != now.get(k))  # fmt: skip
