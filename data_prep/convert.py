"""``data convert``: Alpaca/BELLE and OpenAI ``messages`` files -> ShareGPT JSONL.

* Alpaca / BELLE: ``{"instruction", "input", "output"}`` becomes one exchange; a non-empty
  ``input`` is appended to the instruction after a blank line (``instruction + "\\n\\n" +
  input``), the way Alpaca's own prompt shows both.
* OpenAI: ``{"messages": [{"role", "content"}]}``; a ``system`` message is kept as a leading
  ``system`` turn; content given as a list of text parts is joined.
* Like ``data clean``, leading assistant and trailing user turns are dropped.
* ``auto`` decides per record; records already in ShareGPT form pass through (normalised).

Every output record has an ``id``: the input's ``id`` if any, else ``rec<index>``; a repeated
id is suffixed (``id#2``) or dropped, and control characters are removed, as in ``data clean``.
Records that fail are counted with the same reasons as ``data clean``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.drops import DropLog, DropReason, Tally
from data_prep.normalize import (
    IdRegistry,
    RecordDropped,
    check_turns,
    duplicate_ids_field,
    raw_turns,
    readable_record_id,
    remove_control_chars,
    trim_ends,
)
from fastchat_lite.errors import ConversationError
from fastchat_lite.io import atomic_write, iter_records
from fastchat_lite.messages import to_messages

Turn = dict[str, str]
FORMATS = ("auto", "alpaca", "belle", "openai", "sharegpt")


@dataclass
class ConvertConfig:
    """Options of ``fastchat-lite data convert``."""

    from_format: str = field(
        default="auto",
        metadata={"help": "input format (auto = per record)", "choices": list(FORMATS)},
    )
    duplicate_ids: str = duplicate_ids_field()


def detect_format(value: Any) -> str:
    if isinstance(value, dict):
        if "messages" in value:
            return "openai"
        if "instruction" in value or "output" in value:
            return "alpaca"
        if "conversations" in value:
            return "sharegpt"
    raise RecordDropped(
        DropReason.BAD_SHAPE, "neither messages, instruction/output nor conversations"
    )


def from_alpaca(value: Any) -> list[Turn]:
    if not isinstance(value, dict):
        raise RecordDropped(DropReason.BAD_SHAPE, f"record is a {type(value).__name__}")
    fields = {}
    for name in ("instruction", "input", "output"):
        text = value.get(name, "" if name == "input" else None)
        if text is None:
            raise RecordDropped(DropReason.BAD_SHAPE, f"missing {name!r}")
        if not isinstance(text, str):
            raise RecordDropped(DropReason.BAD_SHAPE, f"{name!r} is a {type(text).__name__}")
        fields[name] = text.strip()
    prompt = fields["instruction"]
    if fields["input"]:
        prompt = f"{prompt}\n\n{fields['input']}" if prompt else fields["input"]
    return [{"from": "human", "value": prompt}, {"from": "gpt", "value": fields["output"]}]


def from_openai(value: Any) -> list[Turn]:
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        raise RecordDropped(DropReason.BAD_SHAPE, "'messages' must be a list")
    try:
        messages = to_messages(value["messages"])
    except ConversationError as exc:
        reason = DropReason.UNKNOWN_ROLE if "unknown role" in str(exc) else DropReason.BAD_SHAPE
        raise RecordDropped(reason, str(exc)) from None
    role = {"system": "system", "user": "human", "assistant": "gpt"}
    return [{"from": role[m.role], "value": m.content} for m in messages]


def convert_record(value: Any, fmt: str) -> list[Turn]:
    """Turns of one record in ShareGPT form; raises :class:`RecordDropped`."""
    return _convert(value, fmt)[0]


def _convert(value: Any, fmt: str) -> tuple[list[Turn], int]:
    """(turns, control characters removed) of one record; raises :class:`RecordDropped`."""
    if fmt == "auto":
        fmt = detect_format(value)
    if fmt in ("alpaca", "belle"):
        turns = from_alpaca(value)
    elif fmt == "openai":
        turns = from_openai(value)
    else:
        turns = raw_turns(value)
    removed = 0
    for turn in turns:
        turn["value"], n = remove_control_chars(turn["value"])
        removed += n
    turns = trim_ends(turns)  # same rule as data clean: start with human, end with gpt
    check_turns(turns)
    body = len(turns) - (bool(turns) and turns[0]["from"] == "system")
    if body == 0:
        raise RecordDropped(DropReason.TOO_SHORT, "no human/gpt turn")
    return turns, removed


def convert_file(
    in_path: str | Path, out_path: str | Path, config: ConvertConfig, drops: DropLog
) -> Tally:
    """Convert every record of ``in_path`` into ShareGPT JSONL at ``out_path`` (atomic)."""
    tally = drops.tally
    ids = IdRegistry(config.duplicate_ids)
    fixed = tally.fixed
    fixed.update(control_chars_removed=0, duplicate_ids_suffixed=0)
    with atomic_write(out_path) as out:
        for raw in iter_records(in_path):
            tally.read += 1
            rid = None
            try:
                rid = readable_record_id(raw)
                turns, removed = _convert(raw.value, config.from_format)
            except RecordDropped as drop:
                drops.drop(raw.index, rid, drop.reason, drop.detail)
                continue
            new_id = ids.claim(str(rid))
            if new_id is None:
                detail = f"id {rid!r} is taken by an earlier kept record"
                drops.drop(raw.index, rid, DropReason.DUPLICATE_ID, detail)
                continue
            fixed["duplicate_ids_suffixed"] += new_id != rid
            fixed["control_chars_removed"] += removed
            record = {"id": new_id, "conversations": turns}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            tally.kept += 1
    return tally
