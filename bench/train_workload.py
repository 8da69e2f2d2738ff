"""The training benchmark's workload: one tiny model directory and one conversations file that
our trainer and TRL both read, cut so that neither trainer truncates anything."""

from __future__ import annotations

import json
from pathlib import Path

from fastchat_lite.masking import encode_conversation
from fastchat_lite.messages import to_messages
from fastchat_lite.templates import DEFAULT_TEMPLATE as TEMPLATE
from train.synthetic import synthetic_conversations


def build_workload(root: Path, args) -> tuple[Path, Path]:
    """Save the tiny model + tokenizer and the conversations (cut like our trainer cuts them)."""
    from fastchat_lite.model_loading import load_tokenizer
    from fastchat_lite.tiny import TinyModelConfig, build_tiny_model, texts_of

    records = synthetic_conversations(args.conversations, seed=0, median_words=90)
    model_dir = build_tiny_model(root / "model", list(texts_of(records)), TinyModelConfig())
    tokenizer = load_tokenizer(model_dir)
    rows = []
    for record in records:
        encoded = encode_conversation(record, tokenizer, TEMPLATE, args.max_length)
        if encoded.hard_truncated:
            continue  # TRL would cut it elsewhere; keep only conversations both see whole
        messages = to_messages(record)[: len(to_messages(record)) - encoded.turns_dropped]
        rows.append({"messages": [{"role": m.role, "content": m.content} for m in messages]})
    data = root / "conversations.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return model_dir, data


def load_rows(data: Path) -> list[dict]:
    return [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]


def our_samples(model_dir: Path, data: Path, max_length: int) -> list:
    from fastchat_lite.model_loading import load_tokenizer
    from train.dataset import load_samples

    tokenizer = load_tokenizer(model_dir)
    samples, stats = load_samples([str(data)], tokenizer, TEMPLATE, max_length, progress=False)
    assert stats.kept == stats.records and stats.truncated == 0, stats.summary()
    return samples
