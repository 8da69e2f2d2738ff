"""Shape checks and turn normalisation shared by ``clean``, ``convert`` and ``split``.

A record that cannot be normalised raises :class:`RecordDropped` with a
:class:`~data_prep.drops.DropReason`; callers count it instead of crashing.

Normal form: ``[{"from": "human"|"gpt", "value": str}, ...]`` (optionally one leading
``system`` turn), strictly alternating, starting with ``human`` and ending with ``gpt``.
Consecutive same-role turns are *not* merged: whether two replies in a row belong together
cannot be told from the data, so the record is dropped as ``not_alternating``.
"""

from __future__ import annotations

import re
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


class RecordDropped(Exception):
    """A record is dropped for ``reason``; ``detail`` names the turn or field."""

    def __init__(self, reason: DropReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


def record_id(value: dict[str, Any], index: int) -> str:
    """The record's ``id`` as a string; ``rec<index>`` (0-based input position) when absent."""
    raw = value.get("id")
    if raw is None or raw == "":
        return f"rec{index}"
    if isinstance(raw, (str, int)) and not isinstance(raw, bool):
        return str(raw)
    raise RecordDropped(DropReason.BAD_SHAPE, f"'id' must be a string, got {type(raw).__name__}")


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
