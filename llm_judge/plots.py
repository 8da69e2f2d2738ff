"""Figures for ``eval show`` (scores by category, win/tie/loss, % of reference) and ``eval arena``
(ratings with their intervals), written to PNG with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastchat_lite.errors import MissingExtraError
from fastchat_lite.io import atomic_write
from llm_judge.arena import Rating
from llm_judge.report import Summary


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingExtraError(
            "figures need matplotlib: pip install 'fastchat-lite[eval]'"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    return Path(path)


def _category_bars(ax: Any, summary: Summary) -> None:
    categories = list(summary.category_scores)
    models = sorted(summary.scores)
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        values = [summary.category_scores[c].get(model, 0.0) for c in categories]
        ax.barh([k + i * width for k in range(len(categories))], values, width, label=model)
    ax.set_yticks([k + width * (len(models) - 1) / 2 for k in range(len(categories))])
    ax.set_yticklabels(categories)
    ax.invert_yaxis()
    ax.set_xlim(0, 10)
    ax.set_xlabel("mean score (1-10)")
    ax.set_title("Scores by category")
    ax.legend(loc="lower right", fontsize="small")


def _win_tie_loss(ax: Any, summary: Summary) -> None:
    models = sorted(summary.win_rates, key=lambda m: summary.win_rates[m].adjusted)
    left = [0.0] * len(models)
    for part, color in (("win", "#4c9a2a"), ("tie", "#b0b0b0"), ("loss", "#c0392b")):
        values = [100 * getattr(summary.win_rates[m], part) for m in models]
        ax.barh(models, values, left=left, color=color, label=part, height=0.5)
        left = [a + b for a, b in zip(left, values, strict=True)]
    for y, model in enumerate(models):
        if model in summary.percent_of_reference:
            ax.text(101, y, f"{summary.percent_of_reference[model]:.0f}% of ref.", va="center")
    ax.set_xlim(0, 125)
    ax.set_xlabel("% of games")
    ax.set_title(f"Against {summary.reference or 'all others'} (judge: {summary.judge})")
    ax.legend(loc="lower right", fontsize="small")


def plot_summary(summary: Summary, path: str | Path) -> Path:
    """Category bars (single grading) and win/tie/loss bars (pairwise), side by side."""
    plt = _pyplot()
    panels = [p for p, ok in ((_category_bars, summary.category_scores),
                              (_win_tie_loss, summary.win_rates)) if ok]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for draw, ax in zip(panels, axes[0], strict=True):
        draw(ax, summary)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_ratings(ratings: list[Rating], path: str | Path) -> Path:
    """Each model's rating with its bootstrap 95% interval, best on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(ratings) + 1.5))
    names = [r.model for r in reversed(ratings)]
    points = [r.rating for r in reversed(ratings)]
    errors = [
        [r.rating - r.low for r in reversed(ratings)],
        [r.high - r.rating for r in reversed(ratings)],
    ]
    ax.errorbar(points, names, xerr=errors, fmt="o", capsize=4)
    ax.axvline(1000, color="#999999", linewidth=0.8, linestyle="--")
    ax.set_xlabel("Bradley-Terry rating (Elo scale, mean 1000), 95% bootstrap interval")
    ax.set_title("Arena ratings from side-by-side votes")
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
