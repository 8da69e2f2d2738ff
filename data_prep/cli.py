"""``fastchat-lite data {clean,split,convert,stats,generate}``: argument parsing only.

Each subcommand's options come from its config dataclass (one source of truth for flags, YAML
and defaults); the work is done in the module named after the command. Heavy imports
(transformers, bs4, rich) happen inside the ``run_*`` functions so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from data_prep.generate import command as generate_command
from fastchat_lite.config import add_dataclass_arguments, build_config
from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.processes import EXIT_TERMINATED, Terminated, sigterm_as_interrupt


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="clean, split, convert and inspect ShareGPT-style training data"
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(run=lambda args: _help(parser))
    _add_clean(sub)
    _add_split(sub)
    _add_convert(sub)
    _add_stats(sub)
    generate_command.add_parser(sub)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _common(p: argparse.ArgumentParser, output: bool = True) -> None:
    p.add_argument("input", metavar="IN", help="JSON list or JSON lines file")
    if output:
        p.add_argument("-o", "--output", required=True, metavar="OUT", help="JSONL to write")
        p.add_argument("--report", metavar="FILE", help="write every dropped record as JSON")
    p.add_argument("--config", metavar="YAML", help="options from a YAML file (flags win)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary table")


def _add_clean(sub: argparse._SubParsersAction) -> None:
    from data_prep.clean import CleanConfig

    p = sub.add_parser("clean", help="ChatGPT-UI HTML dump -> clean ShareGPT JSONL")
    _common(p)
    add_dataclass_arguments(p, CleanConfig)
    p.set_defaults(run=run_clean)


def _add_split(sub: argparse._SubParsersAction) -> None:
    from data_prep.split import SplitConfig

    p = sub.add_parser("split", help="split long conversations so each piece fits N tokens")
    _common(p)
    add_dataclass_arguments(p, SplitConfig)
    p.set_defaults(run=run_split)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    from data_prep.convert import FORMATS, ConvertConfig

    p = sub.add_parser("convert", help="Alpaca/BELLE or OpenAI messages -> ShareGPT JSONL")
    _common(p)
    p.add_argument(
        "--from",
        dest="from_format",
        default=argparse.SUPPRESS,
        choices=FORMATS,
        help="input format (same as --from-format; default: auto)",
    )
    add_dataclass_arguments(p, ConvertConfig)
    p.set_defaults(run=run_convert)


def _add_stats(sub: argparse._SubParsersAction) -> None:
    from data_prep.stats import StatsConfig

    p = sub.add_parser("stats", help="counts, turns, length histogram, role balance")
    _common(p, output=False)
    p.add_argument("--json", metavar="FILE", help="also write the statistics as JSON")
    add_dataclass_arguments(p, StatsConfig)
    p.set_defaults(run=run_stats)


@contextlib.contextmanager
def _os_errors_as_user_errors() -> Iterator[None]:
    """An unwritable output or unreadable file is a one-line error, not a traceback."""
    try:
        yield
    except FastChatLiteError:
        raise
    except OSError as exc:
        raise FastChatLiteError(str(exc)) from None


def _stoppable(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``kill`` stops a data command like Ctrl-C (no temp file left, exit 143); a reader that
    closes our stdout (``data stats ... | head``) ends it quietly."""

    @functools.wraps(run)
    def stoppable(args: argparse.Namespace) -> int:
        try:
            with sigterm_as_interrupt():
                return run(args)
        except Terminated:
            print("fastchat-lite: terminated", file=sys.stderr)
            return EXIT_TERMINATED
        except BrokenPipeError:
            # Python would report the pipe again when flushing stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + signal.SIGPIPE

    return stoppable


def _finish(title: str, args: argparse.Namespace, drops, started: float) -> int:
    from data_prep.drops import print_summary

    tally = drops.tally
    if args.report:  # before the timing: the same input gives the same report, byte for byte
        drops.write_report(args.report, {"input": str(args.input), "output": str(args.output)})
    tally.notes["seconds"] = round(time.perf_counter() - started, 2)
    if not args.quiet:
        print_summary(title, tally)
    warning = tally.notes.get("warning")
    if warning:
        print(f"fastchat-lite: warning: {warning}", file=sys.stderr)
    return 0


def _run_file_stage(command: str, args: argparse.Namespace, config_cls: type, work) -> int:
    """Shared shape of clean/split/convert: config, counted drops, summary, exit code."""
    from data_prep.drops import DropLog, Tally

    config = build_config(config_cls, args, args.config)
    started = time.perf_counter()
    with _os_errors_as_user_errors(), DropLog(Tally()) as drops:
        work(args.input, args.output, config, drops)
        return _finish(f"data {command} {Path(args.input).name}", args, drops, started)


@_stoppable
def run_clean(args: argparse.Namespace) -> int:
    from data_prep.clean import CleanConfig, clean_file

    def work(src, out, config, drops):
        try:
            clean_file(src, out, config, drops, progress=not args.quiet)
        except KeyboardInterrupt:
            print("fastchat-lite: interrupted; the same command with --resume continues it",
                  file=sys.stderr)  # fmt: skip
            raise

    return _run_file_stage("clean", args, CleanConfig, work)


@_stoppable
def run_split(args: argparse.Namespace) -> int:
    from data_prep.split import SplitConfig, split_file

    def work(src, out, config, drops):
        split_file(src, out, config, drops, progress=not args.quiet)

    return _run_file_stage("split", args, SplitConfig, work)


@_stoppable
def run_convert(args: argparse.Namespace) -> int:
    from data_prep.convert import ConvertConfig, convert_file

    return _run_file_stage("convert", args, ConvertConfig, convert_file)


@_stoppable
def run_stats(args: argparse.Namespace) -> int:
    from data_prep.stats import StatsConfig, compute_stats, print_stats
    from fastchat_lite.io import write_json

    config = build_config(StatsConfig, args, args.config)
    with _os_errors_as_user_errors():
        stats = compute_stats(args.input, config)
        print_stats(stats, file=sys.stdout)
        if args.json:
            write_json(args.json, stats)
    return 0
