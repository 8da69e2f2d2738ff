"""The ``fastchat-lite`` console script.

Each command lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``.
Modules are imported when the parser is built, so they must keep heavy imports (torch,
transformers, gradio) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fastchat_lite.errors import FastChatLiteError

# command name -> module providing add_parser/run, in --help order.
COMMANDS: dict[str, str] = {
    "data": "data_prep.cli",
    "init-model": "fastchat_lite.init_model_cli",
    "train": "train.cli",
    "serve": "serve.cli",
    "chat": "serve.chat_cli",
    "eval": "llm_judge.cli",
    "quickstart": "fastchat_lite.quickstart.cli",
    "template": "fastchat_lite.template_cli",
    "export": "fastchat_lite.export_cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastchat-lite",
        description="From raw chat logs to a served chat model: data, train, serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that stage is not installed in this checkout
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except FastChatLiteError as exc:
        print(f"fastchat-lite: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastchat-lite: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
