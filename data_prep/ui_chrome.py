"""What the ChatGPT web UI put into replies that the model never wrote: chrome and error replies.

* Chrome, removed from every gpt turn by :func:`strip_ui_chrome`: the share extension's
  counter (``Copy406 chars / 79 words``), the regenerate counter on a line of its own at the
  start or end of a reply (``1 / 2``, ``2/2``) and stray "Copy code" button labels.
* Error replies (:data:`DEFAULT_UI_ERRORS`, matched by :class:`UiErrorMatcher`): the UI showed
  "network error" or "Too many requests in 1 hour" where the answer should be, and the dump
  kept it as the reply. :func:`trim_final_ui_error` cuts a final failed exchange and rejects
  a conversation with a failed exchange in the middle (``ui_error``).

The error list is data: ``data clean --ui-errors-file FILE`` replaces it, ``--ui-errors`` adds
to it, the same way blocked phrases are configured (:mod:`data_prep.filters`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from data_prep.drops import DropReason
from data_prep.html.rules import collapse_blank_lines
from data_prep.normalize import RecordDropped, Turn

# Error messages the ChatGPT UI displayed in place of a reply (2022-2023 UI). A reply is an
# error when it is one of these as a whole: case, punctuation and markdown marks are ignored,
# any number matches any number, and ``*`` matches any text.
DEFAULT_UI_ERRORS: tuple[str, ...] = (
    "network error",
    "Error in body stream",
    "Load failed",
    "Conversation not found",
    "Unable to load conversation *",
    "Too many requests in 1 hour. Try again later.",
    "Too many requests, please slow down",
    "You've reached our limit of messages per hour. Please try again later.",
    "You've reached our limit of messages per 24 hours. Please try again later.",
    "You've reached the current usage cap for *",
    "Only one message at a time. Please allow any other responses to complete before sending "
    "another message, or wait one minute.",
    "An error occurred. If this issue persists please contact us through our help center at "
    "help.openai.com.",
    "An error occurred. Either the engine you requested does not exist or there was another "
    "issue processing your request. If this issue persists please contact us through our help "
    "center at help.openai.com.",
    "Something went wrong, please try reloading the conversation.",
    "Something went wrong. If this issue persists please contact us through our help center "
    "at help.openai.com.",
    "Something went wrong while generating the response. If this issue persists please contact "
    "us through our help center at help.openai.com.",
    "Hmm...something seems to have gone wrong.",
    "Hmm...something seems to have gone wrong. Maybe try me again in a little bit.",
    "There was an error generating a response",
    "There was an error generating a response. Regenerate response",
    "The server had an error while processing your request. Sorry about that!",
    "The message you submitted was too long, please reload the conversation and submit "
    "something shorter.",
    "ChatGPT is at capacity right now",
    "Our systems have detected unusual activity from your system. Please try again later.",
)

# --- chrome -----------------------------------------------------------------------------

_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)"
_COUNTER = rf"{_NUMBER}[ \t]*chars?[ \t]*/[ \t]*{_NUMBER}[ \t]*words?"
# The share extension's "Copy" button + "406 chars / 79 words": glued to the label it is
# chrome anywhere; alone it is chrome only on a line of its own or glued to a line's end
# ("...done.406 chars / 79 words"), so "the file has 406 chars / 79 words in it" stays.
_WORD_COUNTER = re.compile(
    rf"[ \t]*Copy{_COUNTER}"
    rf"|^[ \t]*(?:Copy\s*)?{_COUNTER}[ \t]*$"
    rf"|(?<=[^\s\d]){_COUNTER}[ \t]*$",
    re.MULTILINE,
)
_REGENERATE_LINE = re.compile(r"[ \t]*(\d{1,2})[ \t]*/[ \t]*(\d{1,2})[ \t]*")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")
# "Copy code" alone, or glued to the language label ("pythonCopy code") when the code block's
# header bar was saved as text.
_COPY_CODE_LINE = re.compile(r"[ \t]*(?:[\w#+.-]{1,30})?Copy code[ \t]*")
_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})")


def strip_ui_chrome(text: str) -> str:
    """``text`` without the UI chrome above, stripped; everything the model wrote is kept."""
    text = text.strip()
    if "chars" in text:
        text = _WORD_COUNTER.sub(_counter_replacement, text)
    if "Copy code" in text:
        text = _strip_copy_code(text)
    if "/" in text:
        text = _strip_regenerate_counter(text.strip())
    return collapse_blank_lines(text).strip()


def _counter_replacement(match: re.Match[str]) -> str:
    s, start, end = match.string, match.start(), match.end()
    text_before = start > 0 and s[start - 1] != "\n"
    text_after = end < len(s) and s[end] != "\n"
    return "\n\n" if text_before and text_after else ""  # glued between two paragraphs


def _is_regenerate_counter(line: str) -> bool:
    match = _REGENERATE_LINE.fullmatch(line)
    return match is not None and 1 <= int(match.group(1)) <= int(match.group(2))


def _strip_regenerate_counter(text: str) -> str:
    """Drop a ``k / n`` line (k <= n) opening or closing the reply, if anything else is left."""
    first, newline, rest = text.partition("\n")
    if newline and _is_regenerate_counter(first):
        rest = _LEADING_BLANK_LINES.sub("", rest)
        if rest.strip():
            text = rest
    head, newline, last = text.rpartition("\n")
    if newline and head.strip() and _is_regenerate_counter(last):
        text = head.rstrip()
    return text


def _strip_copy_code(text: str) -> str:
    """Drop "Copy code" lines outside code and as a code block's first line; unglue fences."""
    out: list[str] = []
    fence = ""
    first_code_line = False
    for line in text.split("\n"):
        if fence:
            if first_code_line and _COPY_CODE_LINE.fullmatch(line):
                first_code_line = False
                continue
            first_code_line = False
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = ""
            out.append(line)
            continue
        opening = _FENCE.match(line)
        if opening:
            fence, first_code_line = opening.group(1), True
            if line.endswith("Copy code"):  # "```pythonCopy code"
                line = line[: -len("Copy code")].rstrip()
        elif _COPY_CODE_LINE.fullmatch(line):
            continue
        out.append(line)
    return "\n".join(out)


# --- error replies ----------------------------------------------------------------------

_DIGITS = re.compile(r"\d+")
_WORDS = re.compile(r"[^\W_]+")


def _words(text: str) -> str:
    """Lowercase words joined by one space; every number becomes ``0``."""
    return " ".join(_WORDS.findall(_DIGITS.sub("0", text.lower())))


class UiErrorMatcher:
    """Tells whether a whole reply is one of the UI's error messages.

    Case, whitespace, punctuation and markdown marks are ignored and any number matches any
    number (``Too many requests in 2 hour`` is the same message); ``*`` in a phrase matches
    any text. A reply that only *mentions* an error ("check for a network error first, ...")
    is not one.
    """

    def __init__(self, phrases: Iterable[str]) -> None:
        patterns = []
        longest = 0
        for phrase in phrases:
            parts = [_words(part) for part in phrase.split("*")]
            if any(parts):
                patterns.append(".*".join(re.escape(part) for part in parts))
                longest = max(longest, len(phrase))
        self._regex = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        # Error messages are short: a longer reply is an answer, and is not scanned.
        self._max_chars = 2 * longest + 200

    def match(self, reply: str) -> str | None:
        """The reply (stripped, at most 80 characters) when it is a UI error, else None."""
        if self._regex is None or len(reply) > self._max_chars:
            return None
        if self._regex.fullmatch(_words(reply)) is None:
            return None
        text = " ".join(reply.split())
        return text if len(text) <= 80 else text[:77] + "..."


def trim_final_ui_error(turns: list[Turn], errors: UiErrorMatcher) -> bool:
    """Remove a final human + UI-error exchange from ``turns`` (in place); True if removed.

    ``turns`` alternate human/gpt (after an optional system turn) and end with gpt, as
    :func:`~data_prep.normalize.check_turns` guarantees. Raises :class:`RecordDropped`
    (``ui_error``) when an error reply is not the last turn (the exchanges after it answer a
    conversation the model never saw) or when nothing but the failed exchange is left.
    """
    last = len(turns) - 1
    for i, turn in enumerate(turns):
        if turn["from"] != "gpt":
            continue
        hit = errors.match(turn["value"])
        if hit is None:
            continue
        if i != last:
            raise RecordDropped(DropReason.UI_ERROR, f"turn {i}: UI error reply {hit!r}")
        if not any(t["from"] == "gpt" for t in turns[: last - 1]):
            raise RecordDropped(
                DropReason.UI_ERROR, f"turn {i}: UI error reply {hit!r}, no exchange left"
            )
        del turns[last - 1 :]
        return True
    return False
