"""Why a record is dropped, counting drops, the final summary table and the ``--report`` JSON.

Every drop carries one :class:`DropReason`; the summary table and ``--report`` count by it, and
docs/data_prep.md lists them all. Reasons are ``str`` values so they serialise as themselves.
Drops are appended to a temp file as they happen, so a run over a huge dump keeps constant
memory; :meth:`DropLog.write_report` then streams them into the report atomically.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

from fastchat_lite.io import atomic_write


class DropReason(str, Enum):
    """One reason per dropped record (the first rule it fails, in this order)."""

    INVALID_JSON = "invalid_json"  # the line / list element is not JSON
    INVALID_UTF8 = "invalid_utf8"  # the line holds a byte sequence that is not UTF-8
    UNREADABLE_REST = "unreadable_rest"  # a JSON list broke off: what follows cannot be read
    BAD_SHAPE = "bad_shape"  # not an object, no conversations list, a turn without from/value
    UNKNOWN_ROLE = "unknown_role"  # a "from" that is not human/gpt/system or an alias
    MESSAGE_TOO_LONG = "message_too_long"  # one message over --max-chars
    HTML_ERROR = "html_error"  # the HTML parser rejected a reply
    EMPTY_MESSAGE = "empty_message"  # a kept turn is empty or whitespace only
    NOT_ALTERNATING = "not_alternating"  # two human (or two gpt) turns in a row
    UI_ERROR = "ui_error"  # a ChatGPT-UI error reply ("network error") before the last turn,
    # or nothing left once a final one is cut
    TOO_SHORT = "too_short"  # fewer than --min-turns turns or --min-chars characters
    BLOCKED_PHRASE = "blocked_phrase"  # a reply leaks another model's identity
    WRONG_LANGUAGE = "wrong_language"  # --lang given and the text is in another language
    DUPLICATE = "duplicate"  # same normalised conversation as an earlier record
    DUPLICATE_ID = "duplicate_id"  # --duplicate-ids drop: an earlier kept record has this id
    NEAR_DUPLICATE = "near_duplicate"  # --near-dup: MinHash-similar to a longer kept record
    EXCHANGE_TOO_LONG = "exchange_too_long"  # split: one human+gpt pair over --max-length

    def __str__(self) -> str:
        return self.value


@dataclass
class Tally:
    """What a run read, kept and dropped (by reason), kept records it trimmed (by reason), and
    repairs made to kept records (``fixed``: e.g. ``control_chars_removed``, characters)."""

    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    trimmed: Counter[str] = field(default_factory=Counter)  # e.g. a final UI-error exchange cut
    fixed: Counter[str] = field(default_factory=Counter)  # e.g. duplicate_ids_suffixed
    notes: dict[str, Any] = field(default_factory=dict)  # command-specific extras

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kept": self.kept,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            **{f"trimmed_{reason}": n for reason, n in sorted(self.trimmed.items())},
            **dict(sorted(self.fixed.items())),
            **self.notes,
        }


class DropLog:
    """Every dropped record (id or index, reason, detail), spooled to disk until the end."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        # Closed in close(); lives as long as the run, so no with-block.
        self._spool: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115

    def drop(self, index: int | None, record_id: str | None, reason: str, detail: str = "") -> None:
        self.tally.dropped[str(reason)] += 1
        entry = {"index": index, "id": record_id, "reason": str(reason), "detail": detail}
        self._spool.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def write_report(self, path: str | Path, header: dict[str, Any]) -> None:
        """Write ``{...header, ...tally, "drops": [...]}`` atomically to ``path``."""
        self._spool.flush()
        self._spool.seek(0)
        body = {**header, **self.tally.as_dict()}
        with atomic_write(path) as out:
            text = json.dumps(body, ensure_ascii=False, indent=2)
            out.write(text[:-2] + ',\n  "drops": [')  # reopen the object to append the list
            for n, line in enumerate(self._spool):
                out.write(("\n    " if n == 0 else ",\n    ") + line.rstrip("\n"))
            out.write("\n  ]\n}\n")

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> DropLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def print_summary(title: str, tally: Tally, file: IO[str] | None = None) -> None:
    """A rich table: read / kept / each drop reason with its count and share."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stderr, highlight=False)
    table = Table(title=title, show_lines=False)
    table.add_column("outcome")
    table.add_column("records", justify="right")
    table.add_column("share", justify="right")

    def share(n: int) -> str:
        return f"{100.0 * n / tally.read:.1f}%" if tally.read else "-"

    table.add_row("read", str(tally.read), "")
    table.add_row("[green]kept[/green]", str(tally.kept), share(tally.kept))
    for reason, count in tally.dropped.most_common():
        table.add_row(f"dropped: {reason}", str(count), share(count))
    for reason, count in tally.trimmed.most_common():
        table.add_row(f"kept, trimmed: {reason}", str(count), share(count))
    for what, count in sorted(tally.fixed.items()):
        if count:
            table.add_row(f"kept, fixed: {what.replace('_', ' ')}", str(count), "")
    for key, value in tally.notes.items():
        if isinstance(value, (int, float, str)):
            table.add_row(key.replace("_", " "), str(value), "")
    console.print(table)
