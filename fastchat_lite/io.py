"""Reading ShareGPT-style inputs and writing outputs atomically.

Readers stream: a JSONL file is read line by line and a JSON list is parsed record by record,
so a 1 GB dump never sits in memory whole. Writers write to a temp file in the target's
directory and rename it into place, so an interrupted run never leaves a half file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fastchat_lite.errors import InputFileError

# Deeper records are invalid_json drops: stages that pickle (worker processes) or walk a
# record recursively would hit Python's recursion limit long before JSON does.
MAX_DEPTH = 100
TOO_DEEP = f"invalid JSON: nested more than {MAX_DEPTH} levels deep"


@dataclass(frozen=True)
class RawRecord:
    """One record as read: ``value`` is the parsed JSON, or ``None`` with ``error`` set.

    ``end`` is the byte offset in the file just after the record: reading can resume there
    (``iter_records(path, start=end, first_index=index + 1)``) and progress can be shown in bytes.
    """

    index: int
    value: Any
    error: str | None = None
    end: int | None = None


_UMASK_LOCK = threading.Lock()
_UMASK: list[int] = []  # read once: reading means setting it, which races with other threads


def _file_mode() -> int:
    """What ``open()`` would give a new file under the process umask (0o666 & ~umask)."""
    with _UMASK_LOCK:
        if not _UMASK:
            current = os.umask(0)
            os.umask(current)
            _UMASK.append(current)
        return 0o666 & ~_UMASK[0]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file next to ``path``; on success fsync and rename it over ``path``.

    The file gets the permissions a plain ``open()`` would (the umask's), not mkstemp's 0600:
    a training job running as another user must be able to read it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, _file_mode())
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temp path next to ``path`` for a writer that opens files itself (GGUF, llama.cpp's
    quantizer); on success it is renamed over ``path`` with plain ``open()`` permissions."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp_name)
        os.chmod(tmp_name, _file_mode())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(value, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


def _first_char(path: Path) -> str:
    with path.open("rb") as handle:
        while chunk := handle.read(4096):
            stripped = chunk.lstrip(b"\xef\xbb\xbf \t\r\n")
            if stripped:
                return chr(stripped[0])
    return ""


def _iter_jsonl(path: Path, start: int = 0, first_index: int = 0) -> Iterator[RawRecord]:
    with path.open("rb") as handle:
        handle.seek(start)
        index, end = first_index, start
        for line in handle:
            end += len(line)
            if not line.strip():
                continue
            try:
                value = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield RawRecord(index, None, f"line is not valid UTF-8 ({exc.reason})", end)
            except json.JSONDecodeError as exc:
                yield RawRecord(index, None, f"invalid JSON: {exc.msg} at column {exc.colno}", end)
            except RecursionError:
                yield RawRecord(index, None, TOO_DEEP, end)
            else:
                # cheap pre-checks: the walk is needed only for many brackets or \ud8xx escapes
                deep = line.count(b"[") + line.count(b"{") > MAX_DEPTH
                problem = _record_problem(value) if deep or _SURROGATE_ESCAPE.search(line) else None
                yield RawRecord(index, None if problem else value, problem, end)
            index += 1


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


def _iter_json_list(
    path: Path, chunk_size: int = 1 << 20, start: int = 0, first_index: int = 0
) -> Iterator[RawRecord]:
    """Stream the elements of a top-level JSON list without loading the file whole.

    ``start`` > 0 is the ``end`` of an element read before: parsing goes on after it.
    """
    decoder = json.JSONDecoder()
    with path.open("rb") as raw:
        raw.seek(start)
        # newline="": byte offsets must count "\r\n" as two bytes (JSON treats both as space).
        handle = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        buf = handle.read(chunk_size)
        # mark: a position in buf whose byte offset in the file (mark_bytes) is known.
        mark, mark_bytes, pos = 0, start, 0
        if start == 0:
            body = buf.lstrip("\ufeff \t\r\n")
            mark_bytes = _utf8_len(buf[: len(buf) - len(body)])
            buf = body
            if not buf.startswith("["):
                raise InputFileError(f"{path}: expected a JSON list or JSON lines")
            pos = 1
        index, eof = first_index, False
        while True:
            while True:  # skip whitespace and separators
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    pos += 1
                if pos < len(buf) or eof:
                    break
                more = handle.read(chunk_size)
                eof = not more
                mark_bytes += _utf8_len(buf[mark:pos])
                buf, pos, mark = buf[pos:] + more, 0, 0
            if pos >= len(buf):
                raise InputFileError(f"{path}: JSON list is not closed (truncated file?)")
            if buf[pos] == "]":
                return
            skip: _DeepSkip | None = None  # set once json found this element too deep
            while True:
                if skip is None:
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                        break
                    except RecursionError:
                        skip = _DeepSkip(pos)
                    except json.JSONDecodeError as exc:
                        if eof:
                            raise InputFileError(
                                f"{path}: record {index} is not valid JSON ({exc.msg}); "
                                "the rest of the list cannot be read"
                            ) from None
                if skip is not None:
                    value, end = _TOO_DEEP_VALUE, skip.end(buf)
                    if end is not None:
                        break
                    if eof:
                        raise InputFileError(f"{path}: JSON list is not closed (truncated file?)")
                more = handle.read(chunk_size)
                eof = not more
                mark_bytes += _utf8_len(buf[mark:pos])
                if skip is not None:
                    skip.i -= pos
                buf, pos, mark = buf[pos:] + more, 0, 0
            mark_bytes += _utf8_len(buf[mark:end])
            mark = end
            problem = TOO_DEEP if value is _TOO_DEEP_VALUE else _record_problem(value)
            yield RawRecord(index, None if problem else value, problem, mark_bytes)
            index += 1
            pos = end  # no copy per record: the buffer is compacted only on refill


_TOO_DEEP_VALUE = object()
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_BRACKET_OR_QUOTE = re.compile(r'["\[\]{}]')
_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class _DeepSkip:
    """Finds the end of an array/object too deep for ``json`` by counting brackets outside
    strings: no recursion, any depth, resumable after a buffer refill (``i`` is where to go
    on), so a huge record is scanned once."""

    def __init__(self, pos: int) -> None:
        self.depth, self.i = 0, pos

    def end(self, buf: str) -> int | None:
        """The element's end in ``buf``, or None when ``buf`` ends first."""
        while match := _BRACKET_OR_QUOTE.search(buf, self.i):
            char = match.group()
            if char == '"':
                closing = _STRING_REST.match(buf, match.end())
                if closing is None:  # the string goes on in the next chunk: rescan it then
                    self.i = match.start()
                    return None
                self.i = closing.end()
                continue
            self.i = match.end()
            self.depth += 1 if char in "[{" else -1
            if self.depth == 0:
                return self.i
        self.i = len(buf)
        return None


def _record_problem(value: Any) -> str | None:
    """Why a parsed record cannot be used (too deep, lone surrogates), or None. Iterative."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and not _encodes(item):
                return "record is not valid UTF-8"
        elif isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                return TOO_DEEP
            if isinstance(item, dict):
                if not all(k.isascii() or _encodes(k) for k in item):
                    return "record is not valid UTF-8"
                item = item.values()
            stack.extend((child, depth + 1) for child in item)
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def iter_records(
    path: str | os.PathLike[str], start: int = 0, first_index: int = 0
) -> Iterator[RawRecord]:
    """Records of a JSON list or JSONL file, streamed; unreadable *records* carry ``error``.

    ``start``/``first_index``: resume after a record read before (its ``end`` and its
    ``index + 1``) instead of reading from the top. Raises :class:`InputFileError` when the
    file as a whole cannot be read.
    """
    source = Path(path)
    if not source.is_file():
        raise InputFileError(f"{source}: no such file")
    first = _first_char(source)
    if first == "[":
        return _iter_json_list(source, start=start, first_index=first_index)
    if first in ("{", ""):
        return _iter_jsonl(source, start, first_index)
    raise InputFileError(f"{source}: expected a JSON list or JSON lines, found {first!r} first")


def read_records(path: str | os.PathLike[str]) -> list[Any]:
    """All well-formed records of a small file (tests, tools); bad ones raise."""
    values = []
    for record in iter_records(path):
        if record.error:
            raise InputFileError(f"{path}: record {record.index}: {record.error}")
        values.append(record.value)
    return values


def write_jsonl(path: str | os.PathLike[str], records: Iterator[Any] | list[Any]) -> int:
    """Write records as JSON lines atomically; returns how many were written."""
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
