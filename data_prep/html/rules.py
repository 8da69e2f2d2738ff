"""The markdown rules both renderers share: what is HTML, escaping, code fences, cells, links.

:mod:`data_prep.html.fast` and :mod:`data_prep.html.markdownify` render the same markdown
because every rule that decides *what* is written lives here, once; the two modules only differ
in how they walk the HTML. This module imports nothing heavy (no bs4, no markdownify).

Rules, each chosen so a CommonMark renderer shows what the HTML showed:

* code blocks become fenced blocks; the language comes from the ``language-xxx`` class of the
  ``<code>`` element, else from the header's ``<span>``; the header and button are dropped;
  the code text is kept verbatim (no escaping), and the fence is longer than any backtick run
  inside the code;
* in ordinary text only what a renderer would misread as emphasis or code is escaped: ``*``
  unless it stands between spaces, ``_`` unless it sits inside a word (``my_var`` stays as
  typed), backticks, ``&`` before an entity-like name, and a paragraph line that would start
  a list, heading or quote. ``<`` is left as written: the UI shows ``&lt;div&gt;`` for a
  ``<div>`` the model wrote, so the model's own text is ``<div>``;
* inline code keeps its spaces as typed (a line break becomes a space);
* lists keep their shape: a loose list (items holding ``<p>``) gets a blank line between
  items, a tight one none; an ``<ol start>`` keeps its number; a list right after a list of
  the same type switches marker (``-``/``*``, ``1.``/``1)``) so a renderer does not merge and
  renumber the two;
* tables become GFM pipe tables with ``|`` in cells escaped; headings are ATX (``#``);
* a link destination holding spaces, parentheses or angle brackets is wrapped in ``<...>``;
* at most one blank line between blocks, except inside fenced code.
"""

from __future__ import annotations

import html as html_lib
import re

# A reply is HTML when it opens with a tag the ChatGPT UI emits (after "1 / 2"-style noise).
_HTML_START = re.compile(
    r"\s*<(?:div|p|pre|ol|ul|table|h[1-6]|blockquote|span|code|strong|em|b|i|br|hr)\b[^>]*>",
    re.IGNORECASE,
)
_HTML_CLOSE = re.compile(r"</(?:div|p|pre|ol|ul|li|table|h[1-6]|blockquote|code|span)>", re.I)
_UI_WRAPPER = re.compile(r"<div\b[^>]*\bclass=\"[^\"]*\bmarkdown\b[^\"]*\bprose\b", re.I)
_BLOCK_CLOSE = re.compile(r"</(?:p|li|pre|ol|ul|table|h[1-6]|blockquote)>", re.I)
_CODE_SPAN = re.compile(r"`[^`\n]*`")

_BACKTICKS = re.compile(r"`+")
_STAR = re.compile(r"\*")
_UNDERSCORE = re.compile(r"_")
_ENTITY_LIKE_AMP = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
# A paragraph line a renderer would read as a heading, quote, list item, setext underline,
# thematic break or code fence.
_BLOCK_START = re.compile(
    r"^( {0,3})(#{1,6}(?=\s|$)|>|[-+*](?=\s|$)|\d{1,9}(?=[.)](?:\s|$))|=+[ \t]*$|-{2,}[ \t]*$"
    r"|~{3,})",
    re.M,
)
_LINK_NEEDS_BRACKETS = re.compile(r"[\s()<>]")
_LINE_WITH_CONTENT = re.compile(r"^(.*)", re.MULTILINE)
_FENCE_OPEN = re.compile(r"(`{3,}|~{3,})")

# Code blocks are cut out with regexes before either renderer runs, so the thousands of
# highlight.js spans inside code never become tree nodes.
_PRE_BLOCK = re.compile(r"<pre\b[^>]*>(.*?)</pre\s*>", re.DOTALL | re.IGNORECASE)
_CODE_ELEMENT = re.compile(r"<code\b([^>]*)>(.*?)</code\s*>", re.DOTALL | re.IGNORECASE)
_CLASS_ATTR = re.compile(r"""\bclass\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_LANG_CLASS = re.compile(r"^(?:language|lang)-(.+)$")
_HEADER_SPAN = re.compile(r"<span\b[^>]*>([^<]*)</span\s*>", re.IGNORECASE)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^>]*>")

# The attribute of the empty ``<pre>`` left where extract_code_blocks cut a block out; its
# value is the block's index in the returned list.
PLACEHOLDER = "data-fastchat-lite-code"


def looks_like_html(text: str) -> bool:
    """True for ChatGPT-UI HTML (a reply to convert), False for plain text or markdown.

    HTML: starts with a UI tag and closes an element, or carries the UI's ``markdown prose``
    wrapper, or closes a block element outside backticks in text that has no code fence.
    A markdown reply that *mentions* tags (`` `</p>` ``, fenced HTML examples) stays as is.
    """
    if "<" not in text:
        return False
    if _HTML_START.match(text):
        return bool(_HTML_CLOSE.search(text))
    if _UI_WRAPPER.search(text):
        return True
    if "```" in text or "</" not in text:
        return False
    return bool(_BLOCK_CLOSE.search(_CODE_SPAN.sub("", text)))


# --- text -------------------------------------------------------------------------------


def escape_text(text: str) -> str:
    """Escape only what CommonMark would otherwise read as markup."""
    if "*" in text:
        text = _STAR.sub(_star_escape, text)
    if "_" in text:
        text = _UNDERSCORE.sub(_underscore_escape, text)
    if "`" in text:
        text = text.replace("`", "\\`")
    if "&" in text:
        text = _ENTITY_LIKE_AMP.sub(r"\\&", text)
    return text


def _star_escape(match: re.Match[str]) -> str:
    s, i = match.string, match.start()
    before = s[i - 1] if i > 0 else " "
    after = s[i + 1] if i + 1 < len(s) else " "
    return "*" if before.isspace() and after.isspace() else "\\*"  # "2 * 3" is never emphasis


def _underscore_escape(match: re.Match[str]) -> str:
    s, i = match.string, match.start()
    before = s[i - 1] if i > 0 else " "
    after = s[i + 1] if i + 1 < len(s) else " "
    # An underscore between two word characters never opens or closes emphasis.
    intraword = (before.isalnum() or before == "_") and (after.isalnum() or after == "_")
    return "_" if intraword and not _starts_run(s, i) else "\\_"


def _starts_run(s: str, i: int) -> bool:
    """True when the underscore is part of a ``__x`` / ``x__`` run touching a word edge."""
    j = i
    while j > 0 and s[j - 1] == "_":
        j -= 1
    k = i
    while k + 1 < len(s) and s[k + 1] == "_":
        k += 1
    left = s[j - 1] if j > 0 else " "
    right = s[k + 1] if k + 1 < len(s) else " "
    return not (left.isalnum() and right.isalnum())


def escape_block_starts(paragraph: str) -> str:
    """Escape each paragraph line that would start a list, heading, quote, rule or fence."""
    return _BLOCK_START.sub(_escape_block_start, paragraph)


def _escape_block_start(match: re.Match[str]) -> str:
    indent, marker = match.group(1), match.group(2)
    if marker[0].isdigit():
        return f"{indent}{marker}\\"  # "1." -> "1\." keeps it a paragraph
    return f"{indent}\\{marker}"


def code_span_text(text: str) -> str:
    """Text inside inline code: a line break becomes a space (as a renderer shows it)."""
    return text.replace("\r\n", " ").replace("\n", " ")


def longest_backtick_run(text: str) -> int:
    """Length of the longest run of backticks in ``text`` (0 if none)."""
    return max((len(m) for m in _BACKTICKS.findall(text)), default=0)


# --- code blocks ------------------------------------------------------------------------


def fenced_block(code: str, language: str) -> str:
    """A fenced code block (with blank lines around) whose fence no code line can close."""
    if not code.strip():
        return ""
    fence = "`" * max(3, longest_backtick_run(code) + 1)
    return f"\n\n{fence}{language}\n{code}\n{fence}\n\n"


def language_from_classes(classes: list[str] | str) -> str:
    """``python`` from ``["hljs", "language-python"]`` (or the same as one string), else ""."""
    for cls in classes.split() if isinstance(classes, str) else classes:
        match = _LANG_CLASS.match(cls)
        if match:
            return match.group(1).strip()
    return ""


def header_language(label: str) -> str:
    """The language named by a code block header's text ("" for the "Copy code" button)."""
    text = label.strip()
    if text and text.lower() != "copy code":
        return text.split()[0].strip("`")
    return ""


def _header_language_html(header_html: str) -> str:
    for match in _HEADER_SPAN.finditer(header_html):
        language = header_language(html_lib.unescape(match.group(1)))
        if language:
            return language
    return ""


def extract_code_blocks(html: str) -> tuple[str, list[str]]:
    """Replace each ``<pre>...<code>...</code>...</pre>`` by a placeholder; return the blocks.

    The placeholder is ``<pre data-fastchat-lite-code="N"></pre>`` (:data:`PLACEHOLDER`), N the
    index of its fenced block. A ``<pre>`` without ``<code>`` is left for the bs4 path.
    """
    blocks: list[str] = []

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        code = _CODE_ELEMENT.search(inner)
        if code is None or "<pre" in code.group(2).lower():
            return match.group(0)
        attrs = _CLASS_ATTR.search(code.group(1))
        language = language_from_classes(attrs.group(1) or attrs.group(2) or "") if attrs else ""
        language = language or _header_language_html(inner[: code.start()])
        text = html_lib.unescape(_ANY_TAG.sub("", _BR.sub("\n", code.group(2))))
        blocks.append(fenced_block(text.strip("\n"), language))
        return f'<pre {PLACEHOLDER}="{len(blocks) - 1}"></pre>'

    return _PRE_BLOCK.sub(replace, html), blocks


# --- lists ----------------------------------------------------------------------------


def list_start(start: object) -> int:
    """The number of an ``<ol>``'s first item: its ``start`` attribute when a number, else 1."""
    return int(start) if isinstance(start, str) and start.isdecimal() else 1


def list_bullet(ordered: bool, number: int, alternate: bool) -> str:
    """An item's marker with its trailing space: ``- ``/``1. ``, or ``* ``/``1) `` for a list
    that directly follows a list of the same type (CommonMark starts a new list when the
    marker changes; with the same marker the two lists merge and the second is renumbered).
    """
    if ordered:
        return f"{number}{')' if alternate else '.'} "
    return "* " if alternate else "- "


def list_item(text: str, bullet: str, loose: bool) -> str:
    """One list item: ``bullet`` + ``text`` with continuation lines indented under the text.

    Items of a loose list (one whose items hold paragraphs) end with a blank line, so a
    renderer shows them loose (``<li><p>``) again; tight items end with one newline, and a
    code block in a tight item has no blank line around it (that would make the list loose).
    """
    text = text.strip()
    if not text:
        return "\n"
    if not loose and ("```" in text or "~~~" in text):
        text = _tighten_fences(text)
    indent = " " * len(bullet)
    text = _LINE_WITH_CONTENT.sub(lambda m: indent + m.group(1) if m.group(1) else "", text)
    return bullet + text[len(bullet) :] + ("\n\n" if loose else "\n")


def _tighten_fences(text: str) -> str:
    """Drop the blank lines around the item's own fenced blocks (a fence may interrupt a
    paragraph, and a paragraph may follow a closing fence); code lines stay as they are."""
    out: list[str] = []
    fence = ""
    closed = False
    for line in text.split("\n"):
        if fence:
            out.append(line)
            if line.startswith(fence) and not line.strip(fence[0]):
                fence, closed = "", True
            continue
        opening = _FENCE_OPEN.match(line)
        if opening:
            while out and not out[-1]:
                out.pop()
            fence = opening.group(1)
        elif closed and not line:
            continue
        closed = False
        out.append(line)
    return "\n".join(out)


# --- tables and links -------------------------------------------------------------------


def colspan_width(colspan: object) -> int:
    """Columns a cell spans: its ``colspan`` when a number (capped at 1000), else 1."""
    if isinstance(colspan, str) and colspan.isdigit():
        return max(1, min(1000, int(colspan)))
    return 1


def table_cell(text: str, colspan: object) -> str:
    """A GFM pipe-table cell: one line, ``|`` escaped, one closing pipe per spanned column."""
    cell = " ".join(text.split()).replace("|", "\\|")
    return " " + cell + " |" * colspan_width(colspan)


def link_destination(href: str) -> str:
    """``href`` as a link destination: wrapped in ``<...>`` when it holds spaces or brackets."""
    if _LINK_NEEDS_BRACKETS.search(href):
        return "<" + href.replace("<", "%3C").replace(">", "%3E") + ">"
    return href


# --- whole reply ------------------------------------------------------------------------


def collapse_blank_lines(text: str) -> str:
    """At most one blank line between blocks, except inside fenced code."""
    if "\n\n\n" not in text:
        return text
    out, in_fence, fence = [], False, ""
    blank = 0
    for line in text.split("\n"):
        stripped = line.lstrip()
        if not in_fence and stripped.startswith(("```", "~~~")):
            in_fence, fence = True, stripped[: len(stripped) - len(stripped.lstrip("`~"))]
        elif in_fence and stripped.startswith(fence) and not stripped.strip("`~"):
            in_fence = False
        if not in_fence and not line.strip():
            blank += 1
            if blank > 1:
                continue
        else:
            blank = 0
        out.append(line)
    return "\n".join(out)
