"""Statistics on hand-computed and simulated cases, and agreement with independent fits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llm_judge.arena import SCALE, Votes, bt_ratings, design, rate
from llm_judge.stats import (
    bootstrap_ci,
    combine_orders,
    length_controlled_win_rate,
    outcomes_for,
    win_rate,
)

scipy_optimize = pytest.importorskip("scipy.optimize")


def _pair(qid, a, b, winner, **extra):
    return {"question_id": qid, "category": "c", "turn": 1, "model_a": a, "model_b": b,
            "winner": winner, "status": "ok", **extra}  # fmt: skip


def test_orders_that_disagree_count_as_a_tie_and_agreeing_ones_as_a_win():
    records = [
        _pair(1, "x", "y", "A"), _pair(1, "y", "x", "B"),  # x wins in both orders
        _pair(2, "x", "y", "A"), _pair(2, "y", "x", "A"),  # first position wins: inconsistent
        _pair(3, "x", "y", "tie"), _pair(3, "y", "x", "tie"),  # a real tie
        _pair(4, "x", "y", "B"), _pair(4, "y", "x", "A"),  # y wins
        _pair(5, "x", "y", "A"),  # its swapped order failed: incomplete
    ]  # fmt: skip
    games, incomplete = combine_orders(records)
    assert [r["question_id"] for r in incomplete] == [5]
    assert outcomes_for("x", games) == [1.0, 0.5, 0.5, 0.0]
    assert outcomes_for("y", games) == [0.0, 0.5, 0.5, 1.0]
    assert [g.inconsistent for g in games] == [False, True, False, False]
    rate_x = win_rate(outcomes_for("x", games), rounds=200)
    assert (rate_x.games, rate_x.win, rate_x.tie, rate_x.loss) == (4, 0.25, 0.5, 0.25)
    assert rate_x.adjusted == 0.5


def test_pair_scores_are_averaged_over_both_orders():
    records = [
        _pair(1, "x", "y", "A", score_a=8, score_b=6),
        _pair(1, "y", "x", "B", score_a=5, score_b=9),
    ]
    (game,), _ = combine_orders(records)
    assert (game.score_1, game.score_2) == (8.5, 5.5)


def test_bootstrap_interval_covers_the_true_rate_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    true_p, covered, trials = 0.3, 0, 300
    for trial in range(trials):
        sample = (rng.random(120) < true_p).astype(float)
        low, high = bootstrap_ci(sample, rounds=400, seed=trial)
        covered += low <= true_p <= high
    assert 0.89 <= covered / trials <= 0.99


def _length_only_games(n=400, seed=3):
    """The model wins exactly when the length term says so: no quality difference."""
    rng = np.random.default_rng(seed)
    base = rng.integers(200, 800, n).astype(float)
    model = base + rng.normal(250, 200, n)  # usually longer
    delta = model - base
    p_win = 1 / (1 + np.exp(-2.5 * np.tanh(delta / delta.std())))
    return (rng.random(n) < p_win).astype(float), model, base


def test_length_controlled_win_rate_removes_a_pure_length_effect():
    preference, model, base = _length_only_games()
    assert preference.mean() > 0.75  # raw win rate bought by length
    assert abs(length_controlled_win_rate(preference, model, base) - 0.5) < 0.08


def test_length_controlled_win_rate_keeps_a_real_quality_difference():
    rng = np.random.default_rng(5)
    n = 400
    base = rng.integers(200, 800, n).astype(float)
    model = base + rng.normal(0, 150, n)  # same lengths on average
    preference = (rng.random(n) < 0.8).astype(float)
    lc = length_controlled_win_rate(preference, model, base)
    assert abs(lc - preference.mean()) < 0.03


def test_length_controlled_win_rate_matches_an_independent_mle_within_half_a_point():
    preference, model, base = _length_only_games(seed=11)
    preference[::7] = 0.5  # some ties
    delta = model - base
    feature = np.tanh(delta / delta.std())

    def nll(params):
        logit = params[0] + params[1] * feature
        return -np.sum(
            preference * -np.logaddexp(0, -logit) + (1 - preference) * -np.logaddexp(0, logit)
        )

    theta = scipy_optimize.minimize(nll, np.zeros(2), method="BFGS").x[0]
    ours = 100 * length_controlled_win_rate(preference, model, base, l2=0.0)
    assert abs(ours - 100 / (1 + math.exp(-theta))) < 0.5


TRUE_RATINGS = {"alpha": 1250.0, "beta": 1100.0, "gamma": 1000.0, "delta": 900.0, "eps": 750.0}


def _simulated_votes(n=6000, seed=0, tie_share=0.1) -> Votes:
    rng = np.random.default_rng(seed)
    names = list(TRUE_RATINGS)
    votes = Votes()
    for _ in range(n):
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = names[i], names[j]
        p_a = 1 / (1 + 10 ** ((TRUE_RATINGS[b] - TRUE_RATINGS[a]) / 400))
        u = rng.random()
        outcome = 0.5 if u < tie_share else float(rng.random() < p_a)
        votes.model_a.append(a)
        votes.model_b.append(b)
        votes.outcome.append(outcome)
    return votes


def test_bradley_terry_recovers_known_strengths_from_simulated_votes():
    ratings = bt_ratings(_simulated_votes(tie_share=0.0))
    mean_true = np.mean(list(TRUE_RATINGS.values()))
    assert abs(np.mean(list(ratings.values())) - 1000) < 1e-6
    for model, true in TRUE_RATINGS.items():
        assert abs(ratings[model] - (true - mean_true + 1000)) < 30, model


def test_bradley_terry_matches_an_independent_scipy_mle_within_half_a_point():
    votes = _simulated_votes(n=3000, seed=4)
    ours = bt_ratings(votes, l2=0.0)
    names = sorted(ours)
    index = {m: k for k, m in enumerate(names)}
    a = np.array([index[m] for m in votes.model_a])
    b = np.array([index[m] for m in votes.model_b])
    y = np.array(votes.outcome)

    def nll(free):  # the first model pinned at 0, ties as half a win each
        r = np.concatenate([[0.0], free])
        d = (r[a] - r[b]) * math.log(10) / 400
        return -np.sum(y * -np.logaddexp(0, -d) + (1 - y) * -np.logaddexp(0, d))

    free = scipy_optimize.minimize(nll, np.zeros(len(names) - 1), method="BFGS").x
    theirs = np.concatenate([[0.0], free])
    theirs = theirs - theirs.mean() + 1000
    for model in names:
        assert abs(ours[model] - theirs[index[model]]) < 0.5, model


def test_arena_design_is_plus_one_minus_one_rows_with_ties_as_half_wins():
    votes = Votes(["x", "x", "y"], ["y", "y", "x"], [1.0, 0.5, 0.0])
    d = design(votes)
    assert d.models == ["x", "y"]
    assert set(map(tuple, d.x.tolist())) == {(1.0, -1.0), (-1.0, 1.0)}
    # x beat y once, tied once (half a win each), y lost to x once as model_a
    wins_x = sum(w for row, yy, w in zip(d.x, d.y, d.weights(), strict=True)
                 if (row[0] == 1 and yy == 1) or (row[0] == -1 and yy == 0))  # fmt: skip
    assert wins_x == 2.5
    assert round(SCALE, 3) == 173.718  # 400 / ln 10


def test_arena_intervals_contain_the_point_rating_and_order_the_models():
    table = rate(_simulated_votes(n=2000, seed=2), rounds=200)
    assert [r.model for r in table] == ["alpha", "beta", "gamma", "delta", "eps"]
    for r in table:
        assert r.low < r.rating < r.high
        assert r.high - r.low < 80
