"""``fastchat-lite data generate``: the subcommand's arguments and its run (see run.py)."""

from __future__ import annotations

import argparse
import sys
import time

from fastchat_lite.config import add_dataclass_arguments, build_config
from fastchat_lite.errors import FastChatLiteError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from data_prep.generate.run import GenerateConfig

    p = sub.add_parser(
        "generate", help="self-instruct: new instruction/input/output tasks from a teacher API"
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="JSONL to grow (resumes)")
    p.add_argument("--report", metavar="FILE", help="write every rejected task as JSON")
    p.add_argument("--config", metavar="YAML", help="options from a YAML file (flags win)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary table")
    add_dataclass_arguments(p, GenerateConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from data_prep.drops import DropLog, Tally, print_summary
    from data_prep.generate.run import GenerateConfig, generate_file

    config = build_config(GenerateConfig, args, args.config)
    started = time.perf_counter()
    with DropLog(Tally()) as drops:
        try:
            tally = generate_file(args.output, config, drops, progress=not args.quiet)
            if args.report:
                header = {"teacher": f"{config.api} {config.model}", "output": str(args.output)}
                drops.write_report(args.report, header)
        except OSError as exc:  # an unwritable OUT: one line, not a traceback
            raise FastChatLiteError(str(exc)) from None
    tally.notes["seconds"] = round(time.perf_counter() - started, 2)
    if not args.quiet:
        print_summary(f"data generate -> {args.output}", tally)
    if warning := tally.notes.get("warning"):
        print(f"fastchat-lite: warning: {warning}", file=sys.stderr)
    return 0
