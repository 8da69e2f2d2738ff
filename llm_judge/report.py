"""``eval show``: judgments -> a summary (scores per model, turn and category; win/tie/loss
against the reference with bootstrap intervals; % of reference; length-controlled win rate)
printed as tables. The figure is drawn from the same summary by :mod:`llm_judge.plots`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_judge.config import ShowConfig, bench_dir, safe_name
from llm_judge.errors import NothingToShowError
from llm_judge.judge import load_judgments
from llm_judge.questions import load_answers
from llm_judge.stats import (
    Game,
    WinRate,
    combine_orders,
    length_controlled_win_rate,
    outcomes_for,
    win_rate,
)


@dataclass
class Summary:
    judge: str
    reference: str | None
    # single grading: model -> mean score overall / per turn / per category
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    category_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    # pairwise: model -> win rate against the reference (or against everyone without one)
    win_rates: dict[str, WinRate] = field(default_factory=dict)
    lc_win_rates: dict[str, float] = field(default_factory=dict)
    inconsistent: dict[str, int] = field(default_factory=dict)
    percent_of_reference: dict[str, float] = field(default_factory=dict)
    percent_source: str = ""
    failed: list[dict[str, Any]] = field(default_factory=list)
    incomplete: int = 0


def _latest(path: Path, judge: str | None) -> tuple[list[dict], list[dict], set[str]]:
    records = list(load_judgments(path).values())
    judges = {r.get("judge", "") for r in records}
    if judge is not None:
        records = [r for r in records if r.get("judge") == judge]
    ok = [r for r in records if r.get("status") == "ok"]
    return ok, [r for r in records if r.get("status") != "ok"], judges


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _single_scores(records: list[dict], summary: Summary) -> None:
    by_model: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    by_category: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by_model[r["model"]]["overall"].append(r["score"])
        by_model[r["model"]][f"turn {r['turn']}"].append(r["score"])
        by_category[r["category"]][r["model"]].append(r["score"])
    summary.scores = {m: {k: _mean(v) for k, v in d.items()} for m, d in sorted(by_model.items())}
    summary.category_scores = {
        c: {m: _mean(v) for m, v in d.items()} for c, d in sorted(by_category.items())
    }
    ref = summary.reference
    if ref in by_model:  # % of reference on the question-turns both were scored on
        scored = {(str(r["question_id"]), r["turn"], r["model"]): r["score"] for r in records}
        for model in by_model:
            shared = [(k, t) for (k, t, m) in scored if m == model and (k, t, ref) in scored]
            total_ref = sum(scored[(k, t, ref)] for k, t in shared)
            if total_ref:
                own = sum(scored[(k, t, model)] for k, t in shared)
                summary.percent_of_reference[model] = 100 * own / total_ref
        summary.percent_source = "single scores"


def _pair_rates(games: list[Game], lengths: dict, summary: Summary, config: ShowConfig) -> None:
    import numpy as np

    ref = summary.reference
    models = sorted({g.model_1 for g in games} | {g.model_2 for g in games})
    for model in models:
        if model == ref:
            continue
        mine = [g for g in games if model in (g.model_1, g.model_2)]
        if ref is not None:
            mine = [g for g in mine if ref in (g.model_1, g.model_2)]
        outcomes = outcomes_for(model, mine, ref)
        if not outcomes:
            continue
        summary.win_rates[model] = win_rate(outcomes, rounds=config.bootstrap, seed=config.seed)
        summary.inconsistent[model] = sum(g.inconsistent for g in mine)
        if ref is not None:
            own = [lengths[(safe_name(model), str(g.question_id), g.turn)] for g in mine]
            theirs = [lengths[(safe_name(ref), str(g.question_id), g.turn)] for g in mine]
            summary.lc_win_rates[model] = length_controlled_win_rate(outcomes, own, theirs)
            pairs = [
                (g.score_1, g.score_2) if g.model_1 == model else (g.score_2, g.score_1)
                for g in mine
                if g.score_1 is not None
            ]
            if pairs:  # Vicuna's way, preferred over single scores when both exist
                if not summary.percent_source.startswith("pairwise"):
                    summary.percent_of_reference = {ref: 100.0}
                own_total, ref_total = np.sum(pairs, axis=0)
                summary.percent_of_reference[model] = 100 * own_total / ref_total
                summary.percent_source = "pairwise scores, both orders averaged"


def _answer_lengths(folder: Path) -> dict[tuple[str, str, int], int]:
    lengths = {}
    for path in sorted(folder.glob("*.jsonl")):
        for qid, turns in load_answers(path).items():
            for turn, text in enumerate(turns, start=1):
                lengths[(path.stem, qid, turn)] = len(text)
    return lengths


def summarize(config: ShowConfig) -> Summary:
    """Everything ``eval show`` prints and draws; raises :class:`NothingToShowError`."""
    folder = bench_dir(config.out_dir, config.bench)
    single, single_bad, judges = _latest(folder / "judgments" / "single.jsonl", config.judge_model)
    pairs, pair_bad, pair_judges = _latest(
        folder / "judgments" / "pairwise.jsonl", config.judge_model
    )
    judges |= pair_judges
    if config.judge_model is None and len(judges) > 1:
        raise NothingToShowError(
            f"{folder}: judgments from several judges ({', '.join(sorted(judges))}); "
            "pick one with --judge-model"
        )
    if not single and not pairs:
        raise NothingToShowError(f"{folder}/judgments: no judgments; run `eval judge` first")
    summary = Summary(judge=config.judge_model or next(iter(judges)), reference=config.reference)
    summary.failed = single_bad + pair_bad
    _single_scores(single, summary)
    if pairs:
        games, incomplete = combine_orders(pairs)
        summary.incomplete = len(incomplete)
        _pair_rates(games, _answer_lengths(folder / "answers"), summary, config)
    return summary


# ---- tables ------------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _ci(ci: tuple[float, float]) -> str:
    return f"[{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]"


def print_summary(summary: Summary, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        console = console if console.is_terminal else Console(width=120)
    if summary.scores:
        turns = sorted({k for s in summary.scores.values() for k in s if k != "overall"})
        table = Table(title=f"Scores (1-10), judge {summary.judge}")
        for column in ["model", "overall", *turns]:
            table.add_column(column, justify="left" if column == "model" else "right")
        for model, s in sorted(summary.scores.items(), key=lambda kv: -kv[1]["overall"]):
            table.add_row(model, *(f"{s.get(c, float('nan')):.2f}" for c in ["overall", *turns]))
        console.print(table)
        models = sorted(summary.scores)
        table = Table(title="Scores by category")
        for column in ["category", *models]:
            table.add_column(column, justify="left" if column == "category" else "right")
        for category, s in summary.category_scores.items():
            table.add_row(category, *(f"{s[m]:.2f}" if m in s else "-" for m in models))
        console.print(table)
    if summary.win_rates:
        against = summary.reference or "all others"
        table = Table(title=f"Pairwise against {against}: both orders, a disagreement is a tie")
        columns = ["model", "games", "win [95% CI]", "tie", "loss", "win+tie/2 [95% CI]"]
        columns += ["LC win rate"] if summary.lc_win_rates else []
        for column in [*columns, "inconsistent"]:
            table.add_column(column, justify="left" if column == "model" else "right")
        for model, w in sorted(summary.win_rates.items(), key=lambda kv: -kv[1].adjusted):
            row = [model, str(w.games), f"{_pct(w.win)} {_ci(w.win_ci)}", _pct(w.tie)]
            row += [_pct(w.loss), f"{_pct(w.adjusted)} {_ci(w.adjusted_ci)}"]
            if summary.lc_win_rates:
                row.append(_pct(summary.lc_win_rates[model]))
            table.add_row(*row, str(summary.inconsistent.get(model, 0)))
        console.print(table)
    if summary.percent_of_reference:
        table = Table(
            title=f"Percent of {summary.reference}'s score", caption=summary.percent_source
        )
        table.add_column("model")
        table.add_column("% of reference", justify="right")
        for model, pct in sorted(summary.percent_of_reference.items(), key=lambda kv: -kv[1]):
            table.add_row(model, f"{pct:.1f}%")
        console.print(table)
    if summary.incomplete:
        console.print(f"{summary.incomplete} pairwise judgments lack their swapped order; skipped")
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} judgments failed and are not counted[/red]")
