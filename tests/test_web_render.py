"""Model output shown in the web demo can never become HTML, but code still reads as code."""

from __future__ import annotations

import pytest

from serve.web.render import display_turn, safe_markdown


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("<script>alert(1)</script>", "&lt;script>alert(1)&lt;/script>"),
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)>"),
        ("a & b &lt; c", "a &amp; b &amp;lt; c"),
        ("one ` tick <b>", "one ` tick &lt;b>"),  # an unmatched backtick opens no code span
        ("p `open\n\n<b>close`", "p `open\n\n&lt;b>close`"),  # spans stop at blank lines
        ("```x`\n<b>", "```x`\n&lt;b>"),  # a backtick in the info string: not a fence
    ],
)
def test_html_in_prose_is_escaped(raw, shown):
    assert safe_markdown(raw) == shown


@pytest.mark.parametrize(
    "code",
    [
        "use `a<b` inline and ``x`<y`` too",
        "```python\nif a < b & c:\n    pass\n```\n",
        "```html\n<b>streaming, fence not closed yet",
    ],
)
def test_code_is_left_verbatim_for_the_markdown_renderer(code):
    assert safe_markdown(code) == code


def test_text_after_a_closed_fence_is_escaped_again():
    text = "```\n<b>\n```\nthen <i>"
    assert safe_markdown(text) == "```\n<b>\n```\nthen &lt;i>"


def test_display_turn_keeps_code_indentation_and_shows_errors_escaped():
    turn = {"role": "assistant", "content": "```\ndef f():\n    return 1\n```", "error": "<x>"}
    shown = display_turn(turn)
    assert shown["role"] == "assistant"
    text = shown["content"][0]["text"]
    assert "\n    return 1\n" in text
    assert text.endswith("⚠ **&lt;x>**")
