"""Shape checks and turn normalisation shared by ``clean``, ``convert`` and ``split``.

A record that cannot be normalised raises :class:`RecordDropped` with a
:class:`~data_prep.drops.DropReason`; callers count it instead of crashing.

Normal form: ``[{"from": "human"|"gpt", "value": str}, ...]`` (optionally one leading
``system`` turn), strictly alternating, starting with ``human`` and ending with ``gpt``.
Consecutive same-role turns are *not* merged: whether two replies in a row belong together
cannot be told from the data, so the record is dropped as ``not_alternating``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import field
from typing import Any

from data_prep.drops import DropReason
from fastchat_lite.io import RawRecord
from fastchat_lite.messages import ROLE_ALIASES, SHAREGPT_ROLE

# Any alias fastchat_lite understands -> the ShareGPT role written to disk.
SHAREGPT_ALIASES: dict[str, str] = {
    alias: SHAREGPT_ROLE[role] for alias, role in ROLE_ALIASES.items()
} | {"assistant": "gpt", "user": "human"}

# "1 / 2" regenerate counter the ShareGPT exporter glued to the start of some turns.
_REGENERATE_NOISE = re.compile(r"^\s*\d{1,2} / \d{1,2}(?=[^\s\d/.,])")

Turn = dict[str, str]

# C0 controls but tab and newline (CR is normalised first), and DEL: invisible, they break
# tokenizers and terminals and carry no meaning in chat text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OR_CR = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

DUPLICATE_ID_ACTIONS = ("suffix", "drop")


class RecordDropped(Exception):
    """A record is dropped for ``reason``; ``detail`` names the turn or field."""

    def __init__(self, reason: DropReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


def record_id(value: dict[str, Any], index: int) -> str:
    """The record's ``id`` as a string: a string as is, any other JSON scalar as its JSON text
    (``7`` -> ``"7"``, ``1.5`` -> ``"1.5"``, ``true`` -> ``"true"``); ``rec<index>`` (0-based
    input position) when absent, null or empty. An object or list id is a ``bad_shape`` drop."""
    raw = value.get("id")
    if raw is None or raw == "":
        return f"rec{index}"
    if isinstance(raw, str):
        return raw
    if isinstance(raw, (int, float)):  # bool is an int
        return json.dumps(raw)
    raise RecordDropped(
        DropReason.BAD_SHAPE, f"'id' must be a string or number, got a {type(raw).__name__}"
    )


def duplicate_ids_field() -> Any:
    """The ``--duplicate-ids`` option, the same in every data command's config."""
    return field(
        default="suffix",
        metadata={
            "help": "a record with the id of an earlier kept record: keep it as id#2, id#3, "
            "... (suffix) or drop it as duplicate_id (drop); counted either way",
            "choices": list(DUPLICATE_ID_ACTIONS),
        },
    )


class IdRegistry:
    """The ids written so far: a repeated id gets the first free ``#n`` suffix (n >= 2), or
    with ``action="drop"`` is refused. Memory: one set entry per kept record."""

    def __init__(self, action: str = "suffix", taken: Iterable[str] = ()) -> None:
        self.action = action
        self.taken = set(taken)
        self._next: dict[str, int] = {}  # first suffix worth trying per id (never decreases)

    def claim(self, rid: str) -> str | None:
        """The id to write for a record with id ``rid``; None when it is to be dropped."""
        if rid not in self.taken:
            self.taken.add(rid)
            return rid
        if self.action == "drop":
            return None
        n = self._next.get(rid, 2)
        while f"{rid}#{n}" in self.taken:
            n += 1
        self._next[rid] = n + 1
        self.taken.add(f"{rid}#{n}")
        return f"{rid}#{n}"


def remove_control_chars(text: str) -> tuple[str, int]:
    """``text`` with CRLF and lone CR as LF and the other control characters (C0 but tab and
    newline, and DEL) removed; and how many were removed."""
    if not _CONTROL_OR_CR.search(text):
        return text, 0
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    cleaned = _CONTROL.sub("", text)
    return cleaned, len(text) - len(cleaned)


def readable_record_id(raw: RawRecord) -> str | None:
    """The id of a record as read, raising :class:`RecordDropped` if it could not be parsed.

    ``None`` for a record that is not an object (its shape is rejected by :func:`raw_turns`).
    """
    if raw.error is not None:
        bad_utf8 = "UTF-8" in raw.error
        raise RecordDropped(DropReason.INVALID_UTF8 if bad_utf8 else DropReason.INVALID_JSON,
                            raw.error)  # fmt: skip
    return record_id(raw.value, raw.index) if isinstance(raw.value, dict) else None


def raw_turns(value: Any) -> list[Turn]:
    """The record's turns with roles mapped to ShareGPT names; values untouched."""
    if not isinstance(value, dict):
        raise RecordDropped(DropReason.BAD_SHAPE, f"record is a {type(value).__name__}")
    turns = value.get("conversations")
    if not isinstance(turns, list):
        what = "missing" if turns is None else f"a {type(turns).__name__}"
        raise RecordDropped(DropReason.BAD_SHAPE, f"'conversations' is {what}, expected a list")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordDropped(DropReason.BAD_SHAPE, f"turn {i} is a {type(turn).__name__}")
        role = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        if not isinstance(role, str):
            raise RecordDropped(DropReason.BAD_SHAPE, f"turn {i} has no string 'from'")
        if not isinstance(text, str):
            raise RecordDropped(DropReason.BAD_SHAPE, f"turn {i} has no string 'value'")
        mapped = SHAREGPT_ALIASES.get(role.strip().lower())
        if mapped is None:
            raise RecordDropped(DropReason.UNKNOWN_ROLE, f"turn {i} has role {role!r}")
        out.append({"from": mapped, "value": text})
    return out


def strip_noise(text: str) -> str:
    """Remove the exporter's glued "1 / 2" counter; keep everything a person typed."""
    if text[:1].isdigit() or text[:1].isspace():
        text = _REGENERATE_NOISE.sub("", text, count=1)
    return text.strip()


def trim_ends(turns: list[Turn]) -> list[Turn]:
    """Drop gpt turns before the first human turn and human turns after the last gpt turn.

    An empty leading system turn is dropped too: it means "no system prompt".
    """
    system = turns[:1] if turns and turns[0]["from"] == "system" else []
    if system and not system[0]["value"].strip():
        turns, system = turns[1:], []
    body = turns[len(system) :]
    start = 0
    while start < len(body) and body[start]["from"] != "human":
        start += 1
    end = len(body)
    while end > start and body[end - 1]["from"] != "gpt":
        end -= 1
    return system + body[start:end]


def check_turns(turns: list[Turn]) -> None:
    """Raise unless turns alternate human/gpt after an optional system turn, none empty."""
    body = turns[1:] if turns and turns[0]["from"] == "system" else turns
    for i, turn in enumerate(turns):
        if not turn["value"].strip():
            raise RecordDropped(DropReason.EMPTY_MESSAGE, f"turn {i} ({turn['from']}) is empty")
    for i, turn in enumerate(body):
        expected = "human" if i % 2 == 0 else "gpt"
        if turn["from"] != expected:
            raise RecordDropped(
                DropReason.NOT_ALTERNATING,
                f"turn {i} is {turn['from']!r} where {expected!r} was expected",
            )
