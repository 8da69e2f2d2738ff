"""ROUGE-L similarity of a new instruction to the pool, fast enough for a pool of 50K+.

Decisions are Alpaca's, exactly: tokens as rouge-score makes them (lowercase, every run of
characters outside ``[a-z0-9]`` becomes a space, whitespace split, no stemmer), the ROUGE-L
F-measure computed with rouge-score's own arithmetic (``p = lcs / len(pool entry)``, ``r = lcs
/ len(new)``, ``f = 2pr / (p + r)``), and a new instruction is rejected when its highest score
against the pool (seeds, earlier accepted tasks, and earlier accepted tasks of the same batch)
is above the threshold (0.7).

Chinese: rouge-score's tokenizer keeps only ``[a-z0-9]``, so a Chinese instruction has no token
at all and scores 0 against everything (nothing is ever rejected). With ``cjk=True`` each CJK
character (ideographs, kana, hangul syllables) is a token of its own, between the same ASCII
runs: Chinese has no spaces and most words are one or two characters, so the characters are
the only units that need no segmenter and ROUGE-L over them is what Chinese ROUGE scripts
compute. On text without CJK characters both tokenizers give the same tokens.

Speed: tokens are mapped to integer ids and each instruction to a string of ``chr(id)``, so
rapidfuzz compares token sequences as strings in C++ (bit-parallel LCS, several threads).
``2 lcs / (len_a + len_b)`` is rapidfuzz's ``Indel.normalized_similarity``, equal to the
F-measure; rapidfuzz prunes with it (length difference, then banded LCS), and only pairs it
scores within a hair of the threshold are recomputed exactly the rouge-score way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# kana, CJK ideographs (with extension A and compatibility), hangul syllables, ideograph planes
CJK_RANGES = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)
_TOKEN_CJK = re.compile(f"[a-z0-9]+|[{CJK_RANGES}]")
# Only pairs rapidfuzz scores above threshold - MARGIN get the exact rouge-score arithmetic;
# the margin covers float32 rounding, far below the gap between two distinct F values.
_MARGIN = 1e-4


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's tokens (``RougeScorer(["rougeL"], use_stemmer=False)``)."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def cjk_tokens(text: str) -> list[str]:
    """rouge-score's tokens, plus one token per CJK character."""
    return _TOKEN_CJK.findall(text.lower())


def lcs_fmeasure(lcs: int, new_len: int, pool_len: int) -> float:
    """ROUGE-L F with rouge-score's arithmetic (target = the new text, prediction = pool)."""
    if not new_len or not pool_len:
        return 0.0
    precision = lcs / pool_len
    recall = lcs / new_len
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l(new: str, old: str, *, cjk: bool = False) -> float:
    """ROUGE-L F of one pair, as the pool scores it (``new`` is rouge-score's target)."""
    from rapidfuzz.distance import LCSseq

    tokenize = cjk_tokens if cjk else rouge_tokens
    a, b = tokenize(new), tokenize(old)
    return lcs_fmeasure(LCSseq.similarity(a, b), len(a), len(b))


@dataclass(frozen=True)
class Match:
    """The highest score of a candidate against the pool; ``index`` is its pool position."""

    score: float
    index: int | None

    def above(self, threshold: float) -> bool:
        return self.score > threshold


class SimilarityIndex:
    """The pool of instructions, checked and grown a batch at a time.

    ``check_and_add(texts)`` scores each text against the pool *and* the texts of the same
    call accepted before it (in order), adds the accepted ones, and returns one
    (accepted, :class:`Match`) per text: the same decisions as checking them one by one.
    """

    def __init__(self, threshold: float = 0.7, *, cjk: bool = False, workers: int = -1) -> None:
        self.threshold = threshold
        self.workers = workers
        self._tokenize = cjk_tokens if cjk else rouge_tokens
        self._vocab: dict[str, int] = {}
        self._codes: list[str] = []  # one string of token ids per pool entry
        self.texts: list[str] = []

    def __len__(self) -> int:
        return len(self.texts)

    def encode(self, text: str) -> str:
        """The text's tokens as one character each (rapidfuzz compares them as a string)."""
        vocab = self._vocab
        ids = [vocab.setdefault(token, len(vocab)) for token in self._tokenize(text)]
        # skip the surrogate block: those code points cannot be in a str rapidfuzz accepts
        return "".join(chr(i if i < 0xD800 else i + 0x800) for i in ids)

    def add(self, texts: Sequence[str]) -> None:
        """Add to the pool without checking (the seed tasks, a resumed run's accepted tasks)."""
        for text in texts:
            self._codes.append(self.encode(text))
            self.texts.append(text)

    def best_matches(self, codes: Sequence[str]) -> list[Match]:
        """Each encoded text's highest score against the current pool."""
        from rapidfuzz import process
        from rapidfuzz.distance import Indel, LCSseq

        results = [Match(0.0, None) for _ in codes]
        queries = [(i, code) for i, code in enumerate(codes) if code]
        if not queries or not self._codes:
            return results
        scores = process.cdist(
            [code for _, code in queries],
            self._codes,
            scorer=Indel.normalized_similarity,
            score_cutoff=max(0.0, self.threshold - _MARGIN),
            workers=self.workers,
        )
        for row, (i, code) in enumerate(queries):
            for j in scores[row].nonzero()[0].tolist():
                other = self._codes[j]
                score = lcs_fmeasure(LCSseq.similarity(code, other), len(code), len(other))
                if score > results[i].score:
                    results[i] = Match(score, j)
        return results

    def check_and_add(self, texts: Sequence[str]) -> list[tuple[bool, Match]]:
        from rapidfuzz.distance import LCSseq

        codes = [self.encode(text) for text in texts]
        against_pool = self.best_matches(codes)
        decisions: list[tuple[bool, Match]] = []
        batch_start = len(self._codes)
        for code, text, best in zip(codes, texts, against_pool, strict=True):
            for j in range(batch_start, len(self._codes)):  # accepted earlier in this batch
                other = self._codes[j]
                if code and other:
                    score = lcs_fmeasure(LCSseq.similarity(code, other), len(code), len(other))
                    if score > best.score:
                        best = Match(score, j)
            accepted = not best.above(self.threshold)
            if accepted:
                self._codes.append(code)
                self.texts.append(text)
            decisions.append((accepted, best))
        return decisions
