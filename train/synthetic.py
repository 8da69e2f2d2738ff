"""Synthetic ShareGPT-like conversations for tests and the training benchmark (no downloads).

Lengths are long-tailed like real ShareGPT: each reply's word count is lognormal (median
``median_words``, sigma 1.0), clipped to ``max_words``; user turns are shorter; 1-3 exchanges.
The words come from a fixed vocabulary so any locally trained tokenizer covers them.
"""

from __future__ import annotations

import random
from typing import Any

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "hello",
    "how",
    "can",
    "help",
    "you",
    "today",
    "write",
    "python",
    "function",
    "that",
    "adds",
    "two",
    "numbers",
    "def",
    "return",
    "world",
    "weather",
    "is",
    "fine",
    "emoji",
    "test",
    "works",
    "model",
    "data",
    "train",
    "loss",
    "token",
    "batch",
    "pack",
    "step",
    "learn",
    "chat",
    "reply",
    "user",
    "assistant",
    "question",
    "answer",
    "because",
    "therefore",
    "when",
    "where",
    "which",
    "while",
    "1234567890",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(words, 1)))


def synthetic_conversations(
    n: int,
    seed: int = 0,
    median_words: float = 120.0,
    sigma: float = 1.0,
    max_words: int = 1500,
    max_exchanges: int = 3,
) -> list[dict[str, Any]]:
    """``n`` ShareGPT records ``{"id", "conversations": [{"from", "value"}, ...]}``."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        turns = []
        for _ in range(rng.randint(1, max_exchanges)):
            reply = min(int(rng.lognormvariate(0, sigma) * median_words), max_words)
            question = min(int(rng.lognormvariate(0, sigma) * median_words / 4), max_words)
            turns.append({"from": "human", "value": _text(rng, question)})
            turns.append({"from": "gpt", "value": _text(rng, reply)})
        records.append({"id": f"synthetic_{i}", "conversations": turns})
    return records
