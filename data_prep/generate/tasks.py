"""A task (instruction, optional input, output), the seed files, and the two output formats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.io import iter_records

SEED_DIR = Path(__file__).resolve().parent / "seed_data"
BUILTIN_SEEDS = {
    "alpaca": SEED_DIR / "alpaca_seed_tasks.jsonl",  # CC BY-NC 4.0
    "belle": SEED_DIR / "belle_zh_seed_tasks.jsonl",  # ODC-By, BELLE (LianjiaTech)
}
DEFAULT_SEEDS = {"en": "alpaca", "zh": "belle"}


class SeedTaskError(FastChatLiteError):
    """A seed task file cannot be used (missing, unreadable, a task without its fields)."""


@dataclass(frozen=True)
class Task:
    instruction: str
    input: str
    output: str

    def to_alpaca(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output}

    def to_sharegpt(self, record_id: str) -> dict[str, Any]:
        """The training format, as ``data convert --from alpaca`` writes it."""
        prompt = f"{self.instruction}\n\n{self.input}" if self.input else self.instruction
        turns = [{"from": "human", "value": prompt}, {"from": "gpt", "value": self.output}]
        return {"id": record_id, "conversations": turns}


def _task_from_record(value: Any, where: str) -> Task:
    """Self-instruct form (``instances[0]`` holds input/output) or Alpaca form."""
    if not isinstance(value, dict) or not isinstance(value.get("instruction"), str):
        raise SeedTaskError(f"{where}: a seed task needs a string 'instruction'")
    instances = value.get("instances")
    source = instances[0] if isinstance(instances, list) and instances else value
    fields = {"input": source.get("input") or "", "output": source.get("output")}
    if not all(isinstance(text, str) for text in fields.values()):
        raise SeedTaskError(f"{where}: needs a string 'output' (in 'instances' or top level)")
    return Task(value["instruction"].strip(), fields["input"].strip(), fields["output"].strip())


def seed_path(name_or_path: str | None, lang: str) -> Path:
    """A builtin seed set's file (``alpaca``, ``belle``; None = the one for ``lang``) or a path."""
    name = name_or_path or DEFAULT_SEEDS[lang]
    return BUILTIN_SEEDS.get(name, Path(name))


def load_seed_tasks(name_or_path: str | None, lang: str) -> list[Task]:
    """The seed tasks of a builtin set or a JSON/JSONL file; raises :class:`SeedTaskError`."""
    path = seed_path(name_or_path, lang)
    try:
        records = list(iter_records(path))
    except OSError as exc:  # InputFileError included
        raise SeedTaskError(f"seed tasks: {exc}") from None
    tasks = []
    for record in records:
        where = f"{path}: record {record.index}"
        if record.error:
            raise SeedTaskError(f"{where}: {record.error}")
        tasks.append(_task_from_record(record.value, where))
    if not tasks:
        raise SeedTaskError(f"{path}: no seed task in the file")
    return tasks
