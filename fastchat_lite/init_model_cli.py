"""``fastchat-lite init-model``: a tokenizer trained on your data + a random-init Llama.

The starting point for training from scratch on a CPU (the quickstart and tests use it);
fine-tuning a real base model skips this and points ``train`` at that model instead.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from fastchat_lite.config import add_dataclass_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    from fastchat_lite.tiny import TinyModelConfig

    parser = sub.add_parser(
        "init-model",
        help="train a BPE tokenizer on data and save a random-init Llama model",
        description="Example: fastchat-lite init-model data/clean.jsonl -o work/base-model",
    )
    parser.add_argument("data", nargs="+", help="ShareGPT/OpenAI JSON or JSONL files")
    parser.add_argument("-o", "--output", required=True, help="model directory to write")
    add_dataclass_arguments(parser, TinyModelConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fastchat_lite.io import iter_records
    from fastchat_lite.tiny import TinyModelConfig, build_tiny_model, texts_of

    names = {f.name for f in dataclasses.fields(TinyModelConfig)}
    config = TinyModelConfig(**{k: v for k, v in vars(args).items() if k in names})

    def records():
        for path in args.data:
            for record in iter_records(path):
                if record.error is None:
                    yield record.value

    out = build_tiny_model(Path(args.output), texts_of(records()), config)
    print(
        f"wrote tokenizer + random-init Llama ({config.num_hidden_layers} layers, "
        f"hidden {config.hidden_size}) to {out}"
    )
    return 0
