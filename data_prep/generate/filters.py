"""Why a generated task is rejected, and the checks before the similarity filter.

One :class:`RejectReason` per rejected task (the first check it fails, in this order):
parsing (``invalid_format``, ``truncated``), length, blacklisted kinds of task, how the
instruction starts, then similarity to the pool (``duplicate`` / ``similar``, similarity.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum

from data_prep.generate.similarity import CJK_RANGES
from data_prep.generate.tasks import Task


class RejectReason(str, Enum):
    INVALID_FORMAT = "invalid_format"  # no instruction or output, fields repeated or reordered
    TRUNCATED = "truncated"  # the last task of a reply cut by the token limit
    TOO_SHORT = "too_short"  # instruction under --min-words words (CJK: characters)
    TOO_LONG = "too_long"  # instruction over --max-words
    BLACKLISTED = "blacklisted"  # needs what a text model cannot do (images, audio, files...)
    NON_TEXT_START = "non_text_start"  # starts with punctuation or another non-letter
    DUPLICATE = "duplicate"  # ROUGE-L 1.0 against the pool: the same words
    SIMILAR = "similar"  # ROUGE-L above --similarity-threshold against the pool

    def __str__(self) -> str:
        return self.value


# Kinds of task a text-only model cannot do; whole words, any case.
BLACKLIST_EN = (
    "image", "images", "graph", "graphs", "picture", "pictures", "photo", "photos", "file",
    "files", "map", "maps", "draw", "drawing", "plot", "plotting", "go to", "video", "audio",
    "music", "flowchart", "diagram", "screenshot",
)  # fmt: skip
# Substrings (Chinese has no word boundaries to anchor on).
BLACKLIST_ZH = (
    "图片", "图像", "照片", "图表", "曲线图", "折线图", "柱状图", "饼图", "流程图", "示意图",
    "地图", "视频", "音频", "音乐", "录音", "文件", "附件", "截图", "画一幅", "画一张", "绘制",
    "链接",
)  # fmt: skip
# "Write a program ..." batches crowd out everything else and leave unclear whether the answer
# is code or its result (Alpaca's finding).
BLOCKED_STARTS = ("Write a program",)

_CJK_CHAR = re.compile(f"[{CJK_RANGES}]")


def instruction_length(text: str) -> int:
    """Whitespace-separated words, each CJK character counting as one."""
    cjk = len(_CJK_CHAR.findall(text))
    return cjk + len(_CJK_CHAR.sub(" ", text).split())


def blacklist_pattern(lang: str, extra: Sequence[str] = ()) -> re.Pattern[str]:
    words = [*BLACKLIST_EN, *extra] + (list(BLACKLIST_ZH) if lang == "zh" else [])
    parts = [re.escape(w) if _CJK_CHAR.search(w) else rf"\b{re.escape(w)}\b" for w in words]
    return re.compile("|".join(parts), re.IGNORECASE)


def starts_with_text(text: str, lang: str) -> bool:
    """English: an ASCII letter or digit first (Alpaca: no punctuation, no non-ASCII);
    Chinese: any letter or digit, CJK included."""
    first = text[:1]
    return first.isalnum() and (lang == "zh" or first.isascii())


def check_task(
    task: Task, lang: str, blacklist: re.Pattern[str], min_words: int, max_words: int
) -> tuple[RejectReason, str] | None:
    """The first check ``task`` fails, with a detail for the report; None when it passes."""
    length = instruction_length(task.instruction)
    if length < min_words:
        return RejectReason.TOO_SHORT, f"{length} words < {min_words}"
    if length > max_words:
        return RejectReason.TOO_LONG, f"{length} words > {max_words}"
    if found := blacklist.search(task.instruction):
        return RejectReason.BLACKLISTED, f"mentions {found.group(0)!r}"
    if task.instruction.startswith(BLOCKED_STARTS):
        return RejectReason.BLACKLISTED, "starts with 'Write a program'"
    if not starts_with_text(task.instruction, lang):
        return RejectReason.NON_TEXT_START, f"starts with {task.instruction[:1]!r}"
    return None
