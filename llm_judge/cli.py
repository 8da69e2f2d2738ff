"""``fastchat-lite eval {answer,judge,show,arena}``: argument parsing and printing only.

Each subcommand's options come from its dataclass in :mod:`llm_judge.config`; the work is done
in the module named after the job. Heavy imports (httpx, numpy, matplotlib, rich) happen inside
the ``run_*`` functions so ``fastchat-lite --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastchat_lite.config import add_config_arguments, build_config
from llm_judge.config import AnswerConfig, ArenaConfig, JudgeConfig, ShowConfig, bench_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="answer benchmarks, judge with an LLM, show win rates and arena ratings"
    )
    sub = parser.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    parser.set_defaults(run=lambda args: _help(parser))
    for name, cls, run, text in (
        ("answer", AnswerConfig, run_answer, "answer a bench through OpenAI-compatible APIs"),
        ("judge", JudgeConfig, run_judge, "grade answers with a judge model (cached)"),
        ("show", ShowConfig, run_show, "score tables, win rates, percent of reference, figure"),
        ("arena", ArenaConfig, run_arena, "Bradley-Terry ratings from web-demo votes"),
    ):
        p = sub.add_parser(name, help=text)
        if name == "arena":
            p.add_argument("votes", metavar="VOTES.jsonl", help="the web demo's --vote-file")
        add_config_arguments(p, cls)
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(run=run)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_answer(args: argparse.Namespace) -> int:
    from llm_judge.answers import run_answers

    reports = run_answers(build_config(AnswerConfig, args, args.config), progress=not args.quiet)
    failed = 0
    for r in reports:
        print(
            f"{r.model}: {r.answered} answered, {r.skipped} already done, {len(r.failed)} failed"
            f" ({r.prompt_tokens} prompt + {r.completion_tokens} completion tokens) -> {r.path}"
        )
        for qid, reason in r.failed:
            print(f"  failed question {qid}: {reason}", file=sys.stderr)
        failed += len(r.failed)
    if failed:
        print(f"{failed} questions failed; run the same command again to retry them")
    return 1 if failed else 0


def run_judge(args: argparse.Namespace) -> int:
    from llm_judge.judge import describe_failure
    from llm_judge.judge import run_judge as judge

    config = build_config(JudgeConfig, args, args.config)
    report = judge(config, progress=not args.quiet)
    cost = report.cost(config)
    print(
        f"judge {config.judge_model}: {report.judged} judged, {report.cached} from the cache, "
        f"{len(report.failed)} failed -> {report.path}"
    )
    print(
        f"  {report.calls} calls ({report.retries} retries), {report.prompt_tokens} prompt + "
        f"{report.completion_tokens} completion tokens, estimated cost "
        + (f"${cost:.2f}" if cost is not None else "unknown (set --price-input/--price-output)")
    )
    if report.cached:
        saved = report.cached_prompt_tokens + report.cached_completion_tokens
        print(f"  the cache saved {report.cached} calls ({saved} tokens)")
    for missing in report.missing_answers:
        print(f"  no answer (not judged): {missing}", file=sys.stderr)
    for record in report.failed:
        print(f"  FAILED {describe_failure(record)}", file=sys.stderr)
    if report.failed:
        print(f"{len(report.failed)} judgments failed; run the same command again to retry them")
    return 1 if report.failed or report.missing_answers else 0


def run_show(args: argparse.Namespace) -> int:
    from llm_judge.judge import describe_failure
    from llm_judge.plots import plot_summary
    from llm_judge.report import print_summary, summarize

    config = build_config(ShowConfig, args, args.config)
    summary = summarize(config)
    print_summary(summary)
    for record in summary.failed:
        print(f"  FAILED {describe_failure(record)}", file=sys.stderr)
    figure = config.figure or bench_dir(config.out_dir, config.bench) / "summary.png"
    print(f"figure: {plot_summary(summary, figure)}")
    return 0


def run_arena(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from llm_judge.arena import load_votes, rate
    from llm_judge.plots import plot_ratings

    config = build_config(ArenaConfig, args, args.config)
    votes = load_votes(args.votes)
    ratings = rate(votes, rounds=config.bootstrap, seed=config.seed)
    table = Table(title=f"Arena ratings from {len(votes)} votes (Bradley-Terry, Elo scale)")
    for column in ("rank", "model", "rating", "95% CI", "votes"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for rank, r in enumerate(ratings, start=1):
        interval = f"{r.low - r.rating:+.0f} / {r.high - r.rating:+.0f}"
        table.add_row(str(rank), r.model, f"{r.rating:.0f}", interval, str(r.votes))
    Console().print(table)
    for reason, count in sorted(votes.dropped.items()):
        print(f"  dropped {count} vote(s): {reason}", file=sys.stderr)
    figure = config.figure or Path(args.votes).with_suffix(".ratings.png")
    print(f"figure: {plot_ratings(ratings, figure)}")
    return 0
