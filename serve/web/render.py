"""Turn chat history into what the Gradio Chatbot shows, with model output neutralised.

The Chatbot renders markdown and lets raw HTML through its sanitizer (which *removes* a
``<script>`` rather than showing it). A model can print anything, so every ``<`` and ``&`` in
prose is escaped before rendering: the text ``<script>alert(1)</script>`` is displayed as that
text. Code spans and fenced blocks are left alone because the markdown renderer already shows
their content verbatim (escaping them too would print ``&lt;`` inside code).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BACKTICKS = re.compile(r"`+")
_BLANK_LINE = re.compile(r"(\n[ \t]*\n)")


def escape_prose(text: str) -> str:
    """Escape the characters that start HTML tags or entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _escape_inline(paragraph: str) -> str:
    """Escape a paragraph except inside code spans (a run of N backticks closed by N backticks)."""
    out: list[str] = []
    pos = 0
    while (opening := _BACKTICKS.search(paragraph, pos)) is not None:
        ticks = opening.group()
        closing = next(
            (m for m in _BACKTICKS.finditer(paragraph, opening.end()) if m.group() == ticks), None
        )
        out.append(escape_prose(paragraph[pos : opening.start()]))
        if closing is None:  # an unmatched run is literal text
            out.append(ticks)
            pos = opening.end()
        else:
            out.append(paragraph[opening.start() : closing.end()])
            pos = closing.end()
    out.append(escape_prose(paragraph[pos:]))
    return "".join(out)


def _escape_prose_block(block: str) -> str:
    # Code spans never cross a blank line, so spans are matched paragraph by paragraph.
    return "".join(
        part if _BLANK_LINE.fullmatch(part) else _escape_inline(part)
        for part in _BLANK_LINE.split(block)
    )


def _blocks(text: str) -> Iterator[tuple[bool, str]]:
    """Split into (is_fenced_code, chunk); an unclosed fence runs to the end (CommonMark)."""
    prose: list[str] = []
    code: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line)
        if fence is None:
            if match and not (match.group(1)[0] == "`" and "`" in line[match.end() :]):
                if prose:
                    yield False, "".join(prose)
                    prose = []
                fence = match.group(1)
                code = [line]
            else:
                prose.append(line)
            continue
        code.append(line)
        closing = match.group(1) if match else ""
        if line.strip() == closing and closing[:1] == fence[0] and len(closing) >= len(fence):
            yield True, "".join(code)
            fence, code = None, []
    if code:
        yield True, "".join(code)
    if prose:
        yield False, "".join(prose)


def safe_markdown(text: str) -> str:
    """Markdown that renders ``text`` faithfully but can never produce an HTML element."""
    return "".join(
        chunk if is_code else _escape_prose_block(chunk) for is_code, chunk in _blocks(text)
    )


def display_turn(turn: dict[str, Any]) -> dict[str, Any]:
    """One history turn as a Chatbot message; a failed turn shows its error under the text."""
    body = safe_markdown(turn["content"])
    if turn.get("error"):
        notice = f"⚠ **{escape_prose(turn['error'])}**"
        body = f"{body}\n\n{notice}" if body else notice
    # A text part, not a bare string: Gradio runs inspect.cleandoc on strings, which would
    # strip the indentation of code in the reply.
    return {"role": turn["role"], "content": [{"type": "text", "text": body}]}


def display_history(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Chatbot value for a history; the history itself keeps the raw text."""
    return [display_turn(turn) for turn in history]
