"""The content filters of ``data clean``: blocked phrases (identity leaks) and language.

:func:`load_phrases` also reads the UI error list (:mod:`data_prep.ui_chrome`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from fastchat_lite.errors import FastChatLiteError

# Identity leaks seen in ShareGPT replies; matched case-insensitively, in gpt turns only.
DEFAULT_BLOCKED_PHRASES: tuple[str, ...] = (
    "I am ChatGPT",
    "I'm ChatGPT",
    "my name is ChatGPT",
    "I am a ChatGPT",
    "I am GPT-3",
    "I am GPT-4",
    "I'm GPT-3",
    "I'm GPT-4",
    "trained by OpenAI",
    "developed by OpenAI",
    "created by OpenAI",
    "built by OpenAI",
    "made by OpenAI",
    "an AI model from OpenAI",
    "a language model from OpenAI",
)


_MARKDOWN_MARKS = re.compile(r"[*_`\\]+")


class PhraseMatcher:
    """Case-insensitive phrase search tolerant of runs of whitespace and curly apostrophes."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases = [p.strip() for p in phrases if p.strip()]
        plain = [_MARKDOWN_MARKS.sub("", p) for p in self.phrases]  # texts are matched so
        parts = [self._pattern(p) for p in plain if p.strip()]
        self._regex = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        # Cheap pre-check: the longest word of every phrase must occur for any to match.
        anchors = [self._anchor(p) for p in self.phrases]
        self._anchors = tuple(set(anchors)) if all(anchors) else ()

    @staticmethod
    def _pattern(phrase: str) -> str:
        out = []
        for word in phrase.split():
            out.append(re.escape(word).replace("'", "['’]"))
        return r"\s+".join(out)

    @staticmethod
    def _anchor(phrase: str) -> str:
        # A piece without markdown marks: present in the raw and the mark-stripped text.
        pieces = _MARKDOWN_MARKS.sub(" ", phrase.lower()).split()
        words = [w for w in pieces if "'" not in w and w.isascii()]
        longest = max(words, key=len, default="")
        return longest if len(longest) >= 3 else ""

    def search(self, text: str) -> str | None:
        """The matched phrase as it appears in ``text`` (markdown marks ignored), or None."""
        if self._regex is None:
            return None
        if self._anchors:
            lowered = text.lower()
            if not any(anchor in lowered for anchor in self._anchors):
                return None
        if "*" in text or "_" in text or "`" in text:
            text = _MARKDOWN_MARKS.sub("", text)  # "I am **ChatGPT**" still leaks
        match = self._regex.search(text)
        return match.group(0) if match else None


def load_phrases(path: str | Path, what: str = "blocked-phrases") -> list[str]:
    """One phrase per line; blank lines and lines starting with ``#`` are skipped.

    ``what`` names the list in the error raised for an unreadable file (``--<what>-file``).
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FastChatLiteError(f"cannot read {what} file {path}: {exc}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


_FENCED_CODE = re.compile(r"```.*?(?:```|$)", re.DOTALL)


def detect_language(text: str, sample_chars: int = 2000) -> str:
    """ISO code of ``text``'s language (``zh`` for zh-cn/zh-tw), ``unknown`` if undecidable.

    Code blocks are removed first (they read as English). langdetect is seeded so the same
    text always gets the same answer.
    """
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    sample = _FENCED_CODE.sub(" ", text)[:sample_chars]
    try:
        return detect(sample).split("-")[0].lower()
    except LangDetectException:
        return "unknown"
