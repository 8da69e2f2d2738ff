"""Benchmark: the ``data generate`` similarity filter vs rouge-score the way Alpaca uses it.

Synthesises N English instructions (templates over a word list, about a quarter of them
rewordings of an earlier one, so both decisions happen) and filters them against a pool that
starts as Alpaca's 175 seed tasks and grows with every accepted one: ROUGE-L F above 0.7 to
any pool entry rejects.

* ours: ``SimilarityIndex.check_and_add`` in batches of 17 (one teacher reply), rapidfuzz on
  ``--workers`` threads; every instruction is timed.
* Alpaca: ``generate_instruction.py``'s loop: for each new instruction, a fresh
  ``multiprocessing.Pool(--workers)`` maps rouge-score's ``_score_lcs`` over the whole pool
  (rouge-score's own tokenizer, no stemmer). Running it on all N instructions takes hours, so
  it runs on ``--peer-sample`` instructions drawn uniformly from the N, each against the pool
  exactly as it stood at that point (ours and Alpaca's pools are the same as long as no
  decision differs, which is checked); its total time is estimated as the mean time per
  sampled instruction x N, an unbiased estimate of the sum. ``--peer-persistent`` also times
  one long-lived Pool (Alpaca's loop without the per-instruction Pool start).

    python -m bench.selfinstruct_bench                      # N = 50,000, 2 workers
    python -m bench.selfinstruct_bench --n 5000 --peer-sample 50   # a quick run
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data_prep.generate.similarity import SimilarityIndex  # noqa: E402
from data_prep.generate.tasks import load_seed_tasks  # noqa: E402

VERBS = """Write Explain Describe List Summarize Compare Suggest Give Classify Rewrite Translate
Generate Identify Create Outline Name Recommend Evaluate Predict Convert Draft Plan Review
Critique Estimate Propose Design Analyze Justify Contrast"""
NOUNS = """story poem email essay recipe plan budget argument review summary joke riddle headline
slogan letter speech lesson quiz schedule checklist strategy guide table proof algorithm function
query tweet apology invitation proposal limerick dialogue timeline itinerary menu memo report
anecdote definition analogy metaphor toast eulogy pitch abstract outline"""
ADJECTIVES = """short funny formal persuasive detailed simple creative polite concise balanced vivid
practical surprising friendly critical gentle bold nostalgic cheerful sober playful technical
honest hopeful skeptical curious elegant rustic modern ancient quiet noisy tiny huge urban rural
coastal alpine tropical arctic digital analog"""
THINGS = """bakery volcano garden library museum orchestra startup village harbor railway desert
forest glacier market festival hospital laboratory monastery lighthouse vineyard bridge castle
stadium subway farm island canyon reef satellite robot violin bicycle telescope compass lantern
kettle umbrella typewriter carousel windmill"""
AUDIENCES = """child beginner expert manager teenager customer tourist scientist teacher retiree
nurse farmer pilot student investor neighbour journalist chef architect volunteer"""
VERBS, NOUNS, ADJECTIVES, THINGS, AUDIENCES = (
    words.split() for words in (VERBS, NOUNS, ADJECTIVES, THINGS, AUDIENCES)
)


def _topic(rng: random.Random) -> str:
    return f"the {rng.choice(ADJECTIVES)} {rng.choice(THINGS)}"


def synthesise(n: int, seed: int = 0) -> list[str]:
    """Instructions like a teacher's: many templates' worth of variety, some rewordings."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < 0.2:  # a rewording of an earlier one: often rejected
            words = rng.choice(out).split()
            for _ in range(rng.randint(1, 3)):
                words[rng.randrange(len(words))] = rng.choice(ADJECTIVES + NOUNS)
            out.append(" ".join(words))
            continue
        parts = [rng.choice(VERBS), "a", rng.choice(ADJECTIVES), rng.choice(NOUNS), "about"]
        parts += [_topic(rng)]
        if rng.random() < 0.6:
            parts += ["for", "a", rng.choice(ADJECTIVES), rng.choice(AUDIENCES)]
        if rng.random() < 0.5:
            parts += ["that", "mentions", _topic(rng), "and", _topic(rng)]
        out.append(" ".join(parts) + rng.choice([".", "?", " in under 100 words."]))
    return out


def run_ours(seeds: list[str], new: list[str], workers: int) -> tuple[float, list[bool]]:
    index = SimilarityIndex(0.7, workers=workers)
    index.add(seeds)
    decisions: list[bool] = []
    started = time.perf_counter()
    for start in range(0, len(new), 17):
        decisions += [ok for ok, _ in index.check_and_add(new[start : start + 17])]
    return time.perf_counter() - started, decisions


def alpaca_decision(tokens, pool_tokens, workers: int, pool=None) -> bool:
    from rouge_score import rouge_scorer

    score = partial(rouge_scorer._score_lcs, tokens)
    if pool is None:  # Alpaca: a new Pool for every instruction
        with Pool(workers) as p:
            scores = p.map(score, pool_tokens)
    else:
        scores = pool.map(score, pool_tokens)
    return max(s.fmeasure for s in scores) <= 0.7


def run_peer(seeds, new, ours, sample, workers, persistent=False):
    """Seconds per sampled instruction and the number of decisions that differ from ours."""
    from rouge_score import rouge_scorer

    tokenize = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)._tokenizer.tokenize
    pool_tokens = [tokenize(text) for text in seeds]
    accepted_before = []  # the pool at instruction i: seeds + accepted among new[:i]
    for i, ok in enumerate(ours):
        accepted_before.append(len(pool_tokens))
        if ok:
            pool_tokens.append(tokenize(new[i]))
    times, differing = [], 0
    pool = Pool(workers) if persistent else None
    try:
        for i in sample:
            started = time.perf_counter()
            tokens = tokenize(new[i])  # Alpaca tokenizes each new instruction once
            ok = alpaca_decision(tokens, pool_tokens[: accepted_before[i]], workers, pool)
            times.append(time.perf_counter() - started)
            differing += ok != ours[i]
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return times, differing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="instructions to filter")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--peer-sample", type=int, default=100, help="instructions for Alpaca")
    parser.add_argument("--peer-persistent", action="store_true", help="also time one Pool")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    seeds = [task.instruction for task in load_seed_tasks("alpaca", "en")]
    new = synthesise(args.n, args.seed)
    ours_s, ours = run_ours(seeds, new, args.workers)
    print(f"instructions: {args.n}, pool at the end: {len(seeds) + sum(ours)} "
          f"({args.n - sum(ours)} rejected), workers: {args.workers}")  # fmt: skip
    print(f"ours:   {ours_s:9.1f} s  {args.n / ours_s:10.1f} instructions/s")

    sample = sorted(random.Random(args.seed + 1).sample(range(args.n), args.peer_sample))
    peers = [("alpaca (Pool per instruction)", False)]
    if args.peer_persistent:
        peers.append(("rouge-score, one Pool", True))
    for name, persistent in peers:
        times, differing = run_peer(seeds, new, ours, sample, args.workers, persistent)
        estimate = statistics.fmean(times) * args.n
        print(f"{name}: {estimate:9.1f} s (estimated from {len(sample)} sampled: mean "
              f"{statistics.fmean(times) * 1000:.1f} ms/instruction)  "
              f"{args.n / estimate:10.2f} instructions/s")  # fmt: skip
        print(f"  ratio ours/{name}: {estimate / ours_s:.1f}x; "
              f"differing decisions: {differing} of {len(sample)} sampled")  # fmt: skip


if __name__ == "__main__":
    main()
