"""``eval arena``: Bradley-Terry ratings on the Elo scale from side-by-side votes.

Votes are the web demo's records (``{"vote": "a"|"b"|"tie"|"both_bad", "model_a",
"model_b", ...}``, see ``serve/web/arena.py``); Chatbot Arena's ``winner`` field
(``model_a``, ``model_b``, ``tie``, ``tie (bothbad)``) is read too. Both kinds of tie count
as half a win for each side.

The fit is Chatbot Arena's: a logistic regression without intercept on rows holding +1 for
model A and -1 for model B, ratings = 1000 + 400 / ln(10) * coefficient, so a 400-point gap
means 10:1 odds. Intervals come from refitting on votes resampled with replacement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastchat_lite.io import iter_records
from llm_judge.errors import NothingToShowError, QuestionFileError
from llm_judge.stats import fit_logistic

SCALE = 400.0 / math.log(10.0)
BASE_RATING = 1000.0
_OUTCOMES = {
    "a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5,
    "model_a": 1.0, "model_b": 0.0, "tie (bothbad)": 0.5,
}  # fmt: skip


@dataclass
class Votes:
    model_a: list[str] = field(default_factory=list)
    model_b: list[str] = field(default_factory=list)
    outcome: list[float] = field(default_factory=list)  # 1: A won, 0.5: tie, 0: B won
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def __len__(self) -> int:
        return len(self.outcome)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def load_votes(path: str | Path) -> Votes:
    """Votes of a JSONL file; unusable records are counted by reason in ``dropped``."""
    if not Path(path).is_file():
        raise QuestionFileError(f"{path}: no such vote file (the web demo's --vote-file)")
    votes = Votes()
    for record in iter_records(path):
        value = record.value
        if record.error or not isinstance(value, dict):
            votes.drop("not a JSON object")
            continue
        outcome = _OUTCOMES.get(value.get("vote", value.get("winner")))
        a, b = value.get("model_a"), value.get("model_b")
        if outcome is None:
            votes.drop("unknown vote")
        elif not a or not b:
            votes.drop("model_a or model_b missing")
        elif a == b:
            votes.drop("a model against itself")
        else:
            votes.model_a.append(a)
            votes.model_b.append(b)
            votes.outcome.append(outcome)
    return votes


@dataclass(frozen=True)
class Design:
    """Chatbot Arena's regression problem: two +1/-1 rows (a win, a loss for A) per distinct
    (A, B, result) of the votes; a row's weight is its group's vote count times its share
    (a tie is half a win for each side)."""

    models: list[str]
    x: Any
    y: Any
    share: Any
    group_of_row: Any
    counts: Any  # votes per group

    def weights(self, counts: Any = None) -> Any:
        return (self.counts if counts is None else counts)[self.group_of_row] * self.share


def design(votes: Votes) -> Design:
    import numpy as np

    models = sorted(set(votes.model_a) | set(votes.model_b))
    index = {m: i for i, m in enumerate(models)}
    groups: dict[tuple[int, int, float], int] = {}
    for a, b, outcome in zip(votes.model_a, votes.model_b, votes.outcome, strict=True):
        key = (index[a], index[b], outcome)
        groups[key] = groups.get(key, 0) + 1
    x = np.zeros((2 * len(groups), len(models)))
    y = np.tile([1.0, 0.0], len(groups))
    share = np.zeros(2 * len(groups))
    for g, (i, j, outcome) in enumerate(groups):
        x[2 * g : 2 * g + 2, i], x[2 * g : 2 * g + 2, j] = 1.0, -1.0
        share[2 * g], share[2 * g + 1] = outcome, 1.0 - outcome
    group_of_row = np.repeat(np.arange(len(groups)), 2)
    return Design(models, x, y, share, group_of_row, np.array(list(groups.values()), float))


def bt_ratings(votes: Votes, *, l2: float = 1e-6) -> dict[str, float]:
    """model -> Bradley-Terry rating on the Elo scale (mean 1000)."""
    if len(votes) == 0:
        raise NothingToShowError("no usable votes to rate")
    d = design(votes)
    beta = fit_logistic(d.x, d.y, d.weights(), l2=l2)
    return {m: BASE_RATING + SCALE * float(b) for m, b in zip(d.models, beta, strict=True)}


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    low: float
    high: float
    votes: int


def rate(votes: Votes, *, rounds: int = 1000, seed: int = 0) -> list[Rating]:
    """Ratings with percentile 95% intervals over ``rounds`` bootstrap refits, best first."""
    import numpy as np

    point = bt_ratings(votes)
    d = design(votes)
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, len(d.models)))
    for k in range(rounds):  # resample votes, not rows: a tie's two halves stay together
        counts = rng.multinomial(len(votes), d.counts / d.counts.sum()).astype(float)
        samples[k] = BASE_RATING + SCALE * fit_logistic(d.x, d.y, d.weights(counts), l2=1e-6)
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    played = {m: 0 for m in d.models}
    for a, b in zip(votes.model_a, votes.model_b, strict=True):
        played[a] += 1
        played[b] += 1
    table = [
        Rating(m, point[m], float(lo), float(hi), played[m])
        for m, lo, hi in zip(d.models, low, high, strict=True)
    ]
    return sorted(table, key=lambda r: -r.rating)
