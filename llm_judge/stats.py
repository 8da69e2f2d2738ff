"""The numbers behind ``eval show`` and ``eval arena``: logistic regression, bootstrap intervals,
win/tie/loss rates from position-swapped pairs, and AlpacaEval's length-controlled win rate.

numpy only, imported inside the functions; every function takes plain arrays or records so the
tests can check it on hand-computed cases.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# ---- logistic regression --------------------------------------------------------------------


def fit_logistic(
    x: Any, y: Any, weights: Any = None, *, l2: float = 0.0, max_iter: int = 100, tol: float = 1e-10
) -> Any:
    """Weighted logistic regression without intercept (add a column of ones for one), fitted by
    Newton's method; ``l2`` is a ridge penalty on every coefficient.

    Steps use the pseudo-inverse of the Hessian and start from zero, so a rank-deficient design
    (Bradley-Terry's +1/-1 rows) converges to the solution whose coefficients sum to zero,
    as scikit-learn's unpenalised solvers do.
    """
    import numpy as np

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    beta = np.zeros(x.shape[1])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (w * (y - p)) - l2 * beta
        hessian = (x * (w * p * (1 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        step = np.linalg.pinv(hessian) @ grad
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            break
    return beta


def sigmoid(value: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.asarray(value, dtype=float)))


# ---- bootstrap --------------------------------------------------------------------------------


def bootstrap_ci(
    values: Any,
    statistic: Callable[[Any], Any] | None = None,
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` (default: the mean) over resamples of ``values``
    (rows resampled with replacement)."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(rounds, len(values)))
    if statistic is None:
        stats = values[idx].mean(axis=1)
    else:
        stats = np.array([statistic(values[i]) for i in idx])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


# ---- position-swapped pairs -> games ----------------------------------------------------------


@dataclass(frozen=True)
class Game:
    """One question-turn judged in both orders, from ``model_1``'s side."""

    question_id: Any
    category: str
    turn: int
    model_1: str
    model_2: str
    outcome: float  # 1: model_1 wins, 0.5: tie (or inconsistent orders), 0: model_2 wins
    inconsistent: bool
    score_1: float | None = None
    score_2: float | None = None


def _winner(record: dict[str, Any]) -> str:
    return {"A": record["model_a"], "B": record["model_b"]}.get(record["winner"], "tie")


def combine_orders(records: Iterable[dict[str, Any]]) -> tuple[list[Game], list[dict[str, Any]]]:
    """Games from ok pairwise judgments; the two orders must agree, otherwise it is a tie.

    Returns (games, incomplete): a judgment whose other order is missing or failed is
    incomplete and not counted.
    """
    groups: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if r.get("status") == "ok":
            pair = tuple(sorted((r["model_a"], r["model_b"])))
            groups[(str(r["question_id"]), r["turn"], pair)][r["model_a"]] = r
    games, incomplete = [], []
    for (_qid, turn, (m1, m2)), orders in sorted(groups.items()):
        if len(orders) < 2:
            incomplete.extend(orders.values())
            continue
        first, second = orders[m1], orders[m2]  # m1 as A, then m2 as A
        w1, w2 = _winner(first), _winner(second)
        consistent = w1 == w2
        outcome = 0.5 if not consistent or w1 == "tie" else float(w1 == m1)
        scores: tuple[float | None, float | None] = (None, None)
        if "score_a" in first and "score_a" in second:
            scores = (
                (first["score_a"] + second["score_b"]) / 2,
                (first["score_b"] + second["score_a"]) / 2,
            )
        game = Game(first["question_id"], first["category"], turn, m1, m2, outcome, not consistent)
        games.append(dataclasses.replace(game, score_1=scores[0], score_2=scores[1]))
    return games, incomplete


def outcomes_for(model: str, games: Iterable[Game], opponent: str | None = None) -> list[float]:
    """1/0.5/0 from ``model``'s side for every game it played (against ``opponent`` only, if
    given)."""
    out = []
    for g in games:
        if g.model_1 == model and opponent in (None, g.model_2):
            out.append(g.outcome)
        elif g.model_2 == model and opponent in (None, g.model_1):
            out.append(1.0 - g.outcome)
    return out


@dataclass(frozen=True)
class WinRate:
    games: int
    win: float
    tie: float
    loss: float
    win_ci: tuple[float, float]
    adjusted: float  # (wins + ties / 2) / games, AlpacaEval's and MT-Bench's win rate
    adjusted_ci: tuple[float, float]


def win_rate(outcomes: list[float], *, rounds: int = 1000, seed: int = 0) -> WinRate:
    """Win, tie and loss shares with bootstrap 95% intervals (games resampled)."""
    import numpy as np

    o = np.asarray(outcomes, dtype=float)
    if len(o) == 0:
        nan = float("nan")
        return WinRate(0, nan, nan, nan, (nan, nan), nan, (nan, nan))
    wins = (o == 1.0).astype(float)
    return WinRate(
        len(o),
        float(wins.mean()),
        float((o == 0.5).mean()),
        float((o == 0.0).mean()),
        bootstrap_ci(wins, rounds=rounds, seed=seed),
        float(o.mean()),
        bootstrap_ci(o, rounds=rounds, seed=seed),
    )


# ---- length-controlled win rate (AlpacaEval 2) ----------------------------------------------


def length_controlled_win_rate(
    preference: Any, length_model: Any, length_baseline: Any, *, l2: float = 1e-3
) -> float:
    """AlpacaEval's GLM for one model against the baseline, as a share in [0, 1].

    ``preference`` is 1 where the model won, 0 where the baseline won, 0.5 for a tie. The fit
    is P(model wins) = sigmoid(theta + phi * tanh(delta_len / std(delta_len))); the
    length-controlled win rate is the prediction with the length term zeroed, sigmoid(theta).
    (AlpacaEval also fits a per-instruction difficulty shared across models; with one model
    at a time there is nothing to share it with, so it is left out.)
    """
    import numpy as np

    pref = np.asarray(preference, dtype=float)
    delta = np.asarray(length_model, dtype=float) - np.asarray(length_baseline, dtype=float)
    std = delta.std()
    feature = np.tanh(delta / std) if std > 0 else np.zeros_like(delta)
    x = np.column_stack([np.ones_like(feature), feature])
    # a soft preference p is a win with weight p plus a loss with weight 1 - p
    xx = np.vstack([x, x])
    yy = np.concatenate([np.ones_like(pref), np.zeros_like(pref)])
    ww = np.concatenate([pref, 1 - pref])
    theta, _phi = fit_logistic(xx, yy, ww, l2=l2)
    return float(sigmoid(theta))
