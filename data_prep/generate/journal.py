"""Resuming ``data generate``: ``OUT`` grows by appends, ``OUT.journal.jsonl`` says how far.

The journal's first line names the run's settings that shape ``OUT`` (language, output format);
each further line is one teacher reply, written after that reply's accepted records were
appended to ``OUT`` and fsynced: the tasks it accepted (Alpaca form), what it rejected and why,
the tokens it cost, and ``OUT``'s size in bytes afterwards. A restarted run cuts ``OUT`` back to
the last journalled size (records a killed run appended but never journalled are dropped, not
written twice), then rebuilds the pool, the counters and the rejection list from the journal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from data_prep.generate.tasks import Task
from fastchat_lite.errors import FastChatLiteError

JOURNAL_VERSION = 1


class ResumeError(FastChatLiteError):
    """``OUT`` and its journal do not fit together, or belong to a run with other settings."""


@dataclass
class Progress:
    """What the journal says was done: the state a resumed run starts from."""

    accepted: list[Task] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # index, reason, detail
    requests: int = 0
    tasks_seen: int = 0  # accepted + rejected: the report index of the next task
    prompt_tokens: int = 0
    completion_tokens: int = 0
    over_target: int = 0


def journal_path(out_path: str | Path) -> Path:
    out = Path(out_path)
    return out.with_name(out.name + ".journal.jsonl")


class Journal:
    """Open with :meth:`open` (restores progress), :meth:`commit` once per reply, :meth:`close`."""

    def __init__(self, out_path: str | Path, settings: dict[str, Any]) -> None:
        self.out_path = Path(out_path)
        self.path = journal_path(out_path)
        self.settings = {"version": JOURNAL_VERSION, **settings}
        self.progress = Progress()
        self._out: IO[bytes] | None = None
        self._log: IO[str] | None = None

    def open(self) -> Progress:
        """Restore what an earlier run did (nothing for a new ``OUT``) and open for appending."""
        has_out = self.out_path.exists() and self.out_path.stat().st_size > 0
        if self.path.exists():
            out_bytes = self._replay()
            self._cut_out(out_bytes)
        elif has_out:
            raise ResumeError(
                f"{self.out_path} exists but its journal {self.path.name} does not, so it cannot "
                "be resumed: move it away or choose another -o"
            )
        else:
            self.out_path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.settings) + "\n", encoding="utf-8")
        self._out = self.out_path.open("ab")
        self._log = self.path.open("a", encoding="utf-8")
        return self.progress

    def _replay(self) -> int:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            settings = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            settings = None
        if settings != self.settings:
            raise ResumeError(
                f"{self.path} was written by a run with other settings ({settings}); resume with "
                f"the same --lang and --sharegpt, or choose another -o"
            )
        out_bytes, good = 0, 1
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by a kill: that reply was not committed
            self._absorb(entry)
            out_bytes = entry["out_bytes"]
            good += 1
        if good < len(lines):  # drop the torn line so later commits start on a clean line
            self.path.write_text("".join(f"{line}\n" for line in lines[:good]), encoding="utf-8")
        return out_bytes

    def _absorb(self, entry: dict[str, Any]) -> None:
        p = self.progress
        p.accepted.extend(Task(**task) for task in entry["accepted"])
        p.rejected.extend(entry["rejected"])
        p.requests += 1
        p.tasks_seen += len(entry["accepted"]) + len(entry["rejected"])
        p.prompt_tokens += entry["prompt_tokens"]
        p.completion_tokens += entry["completion_tokens"]
        p.over_target += entry["over_target"]

    def _cut_out(self, out_bytes: int) -> None:
        size = self.out_path.stat().st_size if self.out_path.exists() else 0
        if size < out_bytes:
            raise ResumeError(
                f"{self.out_path} is shorter ({size} bytes) than its journal says ({out_bytes}): "
                "it was changed since; move both away or choose another -o"
            )
        if size > out_bytes:
            os.truncate(self.out_path, out_bytes)

    def commit(self, lines: list[str], entry: dict[str, Any]) -> None:
        """Append ``lines`` to ``OUT``, then the journal ``entry`` (each fsynced)."""
        assert self._out is not None and self._log is not None, "open() first"
        self._out.write("".join(lines).encode("utf-8"))
        self._out.flush()
        os.fsync(self._out.fileno())
        entry = {**entry, "out_bytes": self._out.tell()}
        self._log.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._log.flush()
        os.fsync(self._log.fileno())
        self._absorb(entry)

    def close(self) -> None:
        for handle in (self._out, self._log):
            if handle is not None:
                handle.close()
