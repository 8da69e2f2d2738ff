"""The input of ``data clean`` as a stream that a broken JSON list ends cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fastchat_lite.errors import InputFileError
from fastchat_lite.io import RawRecord, iter_records


class GuardedReader:
    """Records of the input; a JSON list that breaks off mid-way ends the stream cleanly.

    The break is remembered in ``broken`` (index, message) so it is counted as
    ``unreadable_rest``; a file unreadable from its first record still raises, and so does a
    pretty-printed top-level object (its first "line" ``{`` is no JSONL record).
    """

    def __init__(self, path: Path, start: int = 0, first_index: int = 0) -> None:
        self.path = path
        self.records = iter_records(path, start, first_index)
        self.broken: tuple[int, str] | None = None
        self.seen = first_index

    def __iter__(self) -> Iterator[RawRecord]:
        try:
            for raw in self.records:
                if self.seen == 0 and raw.error is not None and _opens_json_object(self.path):
                    raise InputFileError(
                        f"{self.path}: the top level is one JSON object; expected a JSON list "
                        "of records or JSON lines (one record per line)"
                    )
                self.seen += 1
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
