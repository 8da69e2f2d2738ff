"""``data stats``: what a ShareGPT file holds, before spending GPU hours on it.

Counts records (and unreadable ones), turns per conversation, role balance (turns and
characters per role), and a length histogram: tokens of the rendered training sample
(template + tokenizer, exactly what the trainer sees) when ``--tokenizer`` is given, else
characters of all turns.
"""

from __future__ import annotations

import sys
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from data_prep.normalize import RecordDropped, raw_turns
from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.io import iter_records
from fastchat_lite.templates import DEFAULT_TEMPLATE

# Upper bounds of the histogram buckets (the last bucket is open-ended).
BUCKETS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)


@dataclass
class StatsConfig:
    """Options of ``fastchat-lite data stats``."""

    tokenizer: str | None = field(
        default=None, metadata={"help": "tokenizer dir: lengths in tokens instead of chars"}
    )
    template: str = field(default=DEFAULT_TEMPLATE, metadata={"help": "template for token counts"})


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _histogram(lengths: list[int]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for n in lengths:
        for bound in BUCKETS:
            if n < bound:
                counts[f"<{bound}"] += 1
                break
        else:
            counts[f">={BUCKETS[-1]}"] += 1
    labels = [f"<{b}" for b in BUCKETS] + [f">={BUCKETS[-1]}"]
    return {label: counts.get(label, 0) for label in labels}


def compute_stats(path: str | Path, config: StatsConfig) -> dict[str, Any]:
    """Statistics of one file as a JSON-able dict."""
    tokenizer = None
    if config.tokenizer:
        from data_prep.split import load_tokenizer

        tokenizer = load_tokenizer(config.tokenizer)
    unreadable: Counter[str] = Counter()
    turns_per_conv: Counter[int] = Counter()
    role_turns: Counter[str] = Counter()
    role_chars: Counter[str] = Counter()
    lengths = array("q")
    records = 0
    for raw in iter_records(path):
        records += 1
        if raw.error is not None:
            unreadable["invalid_utf8" if "UTF-8" in raw.error else "invalid_json"] += 1
            continue
        try:
            turns = raw_turns(raw.value)
            lengths.append(_length(turns, tokenizer, config.template))
        except RecordDropped as drop:
            unreadable[str(drop.reason)] += 1
            continue
        except FastChatLiteError:  # not alternating, nothing to train on, ...
            unreadable["not_trainable"] += 1
            continue
        turns_per_conv[len(turns)] += 1
        for turn in turns:
            role_turns[turn["from"]] += 1
            role_chars[turn["from"]] += len(turn["value"])
    ordered = sorted(lengths)
    return {
        "file": str(path),
        "records": records,
        "conversations": len(ordered),
        "unusable": dict(unreadable),
        "turns": {
            "total": sum(role_turns.values()),
            "per_conversation": dict(sorted(turns_per_conv.items())),
        },
        "roles": {r: {"turns": role_turns[r], "chars": role_chars[r]} for r in sorted(role_turns)},
        "length_unit": "tokens" if tokenizer else "chars",
        "length": {
            "mean": round(sum(ordered) / len(ordered), 1) if ordered else 0,
            "p50": _percentile(ordered, 0.5),
            "p90": _percentile(ordered, 0.9),
            "p99": _percentile(ordered, 0.99),
            "max": ordered[-1] if ordered else 0,
        },
        "histogram": _histogram(ordered),
    }


def _length(turns: list[dict[str, str]], tokenizer: Any, template: str) -> int:
    if tokenizer is None:
        return sum(len(t["value"]) for t in turns)
    from fastchat_lite import encode_conversation

    return len(encode_conversation(turns, tokenizer, template).input_ids)


def print_stats(stats: dict[str, Any], file: IO[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, highlight=False)
    head = Table(title=f"data stats {Path(stats['file']).name}", show_header=False)
    head.add_row("records", str(stats["records"]))
    head.add_row("conversations", str(stats["conversations"]))
    for reason, count in stats["unusable"].items():
        head.add_row(f"unusable: {reason}", str(count))
    head.add_row("turns", str(stats["turns"]["total"]))
    for role, info in stats["roles"].items():
        head.add_row(f"{role} turns / chars", f"{info['turns']} / {info['chars']}")
    unit = stats["length_unit"]
    for key, value in stats["length"].items():
        head.add_row(f"length {key} ({unit})", str(value))
    console.print(head)
    hist = Table(title=f"conversation length ({unit})")
    hist.add_column("bucket")
    hist.add_column("conversations", justify="right")
    hist.add_column("")
    top = max(stats["histogram"].values(), default=0) or 1
    for label, count in stats["histogram"].items():
        hist.add_row(label, str(count), "#" * round(30 * count / top))
    console.print(hist)
