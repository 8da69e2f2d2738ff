"""Reading a batch of tasks back out of the teacher's reply.

Tolerant of what models do to a numbered list: ``### Task 4``, ``Task 4:``, ``**Task 4**``,
``4. Instruction: ...`` (Alpaca's style), bold or bulleted labels (``**Input:**``, ``- Output:``),
English labels in a Chinese reply and the reverse, ``<none>``/``<无>``/``N/A`` for no input, and
chatter before the first task. A block without an instruction or an output, or with its fields
out of order, is ``invalid_format``; with ``finish_reason == "length"`` the last block was cut
by the token limit and is ``truncated``, however complete it looks.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from data_prep.generate.filters import RejectReason
from data_prep.generate.tasks import Task

_HEADER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:task|任务)[ \t]*#?(\d+)[ \t]*(?:\*\*|__)?"
    r"[ \t]*[:：.]?[ \t]*(?:\*\*|__)?[ \t]*$"
    r"|^[ \t]*(?:#{1,6}[ \t]*)?(\d+)[ \t]*[.)、][ \t]*(?=(?:\*\*|__)?[ \t]*(?:instruction|指令))",
    re.IGNORECASE | re.MULTILINE,
)
_LABEL = re.compile(
    r"^[ \t]*(?:[-*][ \t]+|\d+[ \t]*[.)、][ \t]*)?(?:\*\*|__)?[ \t]*"
    r"(instruction|input|output|指令|输入|输出)[ \t]*(?:\*\*|__)?[ \t]*[:：]"
    r"[ \t]*(?:\*\*|__)?[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_FIELD = {"instruction": "instruction", "指令": "instruction", "input": "input", "输入": "input"}
_FIELD |= {"output": "output", "输出": "output"}
_NO_INPUT = {"", "<none>", "none", "<noinput>", "no input", "n/a", "<无>", "无", "（无）", "(none)"}
_RULE_LINES = re.compile(r"(?:\n[ \t]*[-#*=_]{3,}[ \t]*)+$")  # a trailing --- or ### separator


@dataclass(frozen=True)
class Rejected:
    """A piece of the reply that is no task: why, and the text it was (for the report)."""

    reason: RejectReason
    detail: str
    text: str


@dataclass
class ParsedReply:
    """Tasks and rejected pieces in the order the reply has them."""

    items: list[Task | Rejected] = field(default_factory=list)

    @property
    def tasks(self) -> list[Task]:
        return [item for item in self.items if isinstance(item, Task)]

    @property
    def rejected(self) -> list[Rejected]:
        return [item for item in self.items if isinstance(item, Rejected)]


def split_blocks(text: str) -> list[str]:
    """The reply cut at each task header; text before the first header is kept only when it
    holds fields itself (a reply that starts straight with ``Instruction:``)."""
    starts = [m.start() for m in _HEADER.finditer(text)]
    blocks = [text[a:b] for a, b in itertools.pairwise([*starts, len(text)])]
    head = text[: starts[0]] if starts else text
    if _LABEL.search(head):
        blocks.insert(0, head)
    return blocks


def parse_block(block: str) -> Task | Rejected:
    """One task from one block (header included or not)."""
    labels = list(_LABEL.finditer(block))
    values: dict[str, str] = {}
    order: list[str] = []
    for i, match in enumerate(labels):
        name = _FIELD[match.group(1).lower()]
        if name in values:
            return Rejected(RejectReason.INVALID_FORMAT, f"{name} given twice", block.strip())
        last = name == "output" or i + 1 == len(labels)  # an answer may quote "Input:" lines
        end = len(block) if last else labels[i + 1].start()
        values[name] = _RULE_LINES.sub("", block[match.end() : end].rstrip()).strip()
        order.append(name)
        if name == "output":
            break
    missing = [name for name in ("instruction", "output") if not values.get(name)]
    if missing:
        detail = f"no {' or '.join(missing)}"
        return Rejected(RejectReason.INVALID_FORMAT, detail, block.strip())
    if order != sorted(order, key=["instruction", "input", "output"].index):
        return Rejected(RejectReason.INVALID_FORMAT, "fields out of order", block.strip())
    task_input = values.get("input", "")
    if task_input.lower() in _NO_INPUT:
        task_input = ""
    return Task(values["instruction"], task_input, values["output"])


def parse_reply(text: str, finish_reason: str | None, prefix: str = "") -> ParsedReply:
    """Every task in ``text``; ``prefix`` is prompt text the reply continues (completion mode)."""
    blocks = split_blocks(prefix + text)
    cut = finish_reason == "length" and bool(blocks)
    parsed = ParsedReply([parse_block(block) for block in blocks[: len(blocks) - cut]])
    if cut:
        detail = "the reply hit the token limit inside this task"
        parsed.items.append(Rejected(RejectReason.TRUNCATED, detail, blocks[-1].strip()))
    return parsed
