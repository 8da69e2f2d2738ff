"""Reading a verdict out of a judge's reply, strictly: a reply that does not hold exactly one
verdict in the asked-for form raises :class:`VerdictError` (the judge is asked again, then the
judgment is counted as failed), never a guessed score.

- single: ``Rating: [[7]]`` or ``[[7.5]]``, 1 to 10; ``Rating: 7`` is accepted as a fallback;
- labels: ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie);
- scores: a first line of exactly two numbers from 1 to 10 (``8 6``, ``8, 6``, ``8/6``).
"""

from __future__ import annotations

import re

from llm_judge.errors import VerdictError

_NUMBER = r"(\d+(?:\.\d+)?)"
_BRACKETED = re.compile(r"\[\[\s*" + _NUMBER + r"\s*(?:/\s*10\s*)?\]\]")
_RATING_LINE = re.compile(r"rating\s*[:=]\s*\[?\s*" + _NUMBER + r"\s*\]?", re.IGNORECASE)
_LABEL = re.compile(r"\[\[\s*([ABC])\s*\]\]", re.IGNORECASE)
_SCORE_PAIR = re.compile(r"^[*\s]*" + _NUMBER + r"\s*(?:[,;/]\s*|\s+)" + _NUMBER + r"[*.\s]*$")
LABEL_WINNER = {"A": "A", "B": "B", "C": "tie"}


def _in_range(value: float, text: str) -> float:
    if not 1 <= value <= 10:
        raise VerdictError(f"score {value:g} is outside 1-10 in {text!r}")
    return value


def _short(text: str) -> str:
    return text if len(text) <= 120 else f"{text[:60]} ... {text[-50:]}"


def parse_rating(text: str) -> float:
    """The 1-10 rating of a single-answer judgment."""
    found = {float(m) for m in _BRACKETED.findall(text)}
    if not found:
        found = {float(m) for m in _RATING_LINE.findall(text)}
    if not found:
        raise VerdictError(f"no rating like [[7]] in {_short(text)!r}")
    if len(found) > 1:
        values = ", ".join(f"{v:g}" for v in sorted(found))
        raise VerdictError(f"several different ratings ({values}) in {_short(text)!r}")
    return _in_range(found.pop(), _short(text))


def parse_label(text: str) -> str:
    """``A``, ``B`` or ``tie`` from a ``[[A]]`` / ``[[B]]`` / ``[[C]]`` verdict."""
    found = {m.upper() for m in _LABEL.findall(text)}
    if not found:
        raise VerdictError(f"no verdict [[A]], [[B]] or [[C]] in {_short(text)!r}")
    if len(found) > 1:
        raise VerdictError(f"contradicting verdicts {sorted(found)} in {_short(text)!r}")
    return LABEL_WINNER[found.pop()]


def parse_score_pair(text: str) -> tuple[float, float]:
    """Assistant A's and B's scores from the first non-empty line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise VerdictError("the judge's reply is empty")
    match = _SCORE_PAIR.match(lines[0])
    if not match:
        raise VerdictError(f"first line {lines[0][:80]!r} is not two scores like '8 6'")
    first, second = (float(g) for g in match.groups())
    return _in_range(first, lines[0]), _in_range(second, lines[0])


def winner_of_scores(score_a: float, score_b: float) -> str:
    return "A" if score_a > score_b else "B" if score_b > score_a else "tie"
