"""ChatGPT web-UI HTML -> markdown, for assistant turns only.

ShareGPT dumps store each assistant reply as the HTML the ChatGPT page rendered: a
``<div class="markdown prose ...">`` wrapper, ``<pre>`` code blocks carrying a header with the
language and a "Copy code" button, highlight.js ``<span>``s inside the code, tables, lists.
This module turns that back into the markdown the model should learn to write.

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
* tables become GFM pipe tables with ``|`` in cells escaped; headings are ATX (``#``);
* KaTeX math becomes ``$tex$`` / ``$$ ... $$`` from its TeX annotation;
* buttons, SVG icons, scripts and styles are dropped.

Callers decide which turns are HTML (:func:`looks_like_html`); human turns are never converted.
"""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

from bs4 import BeautifulSoup, Tag
from markdownify import MarkdownConverter

# A reply is HTML when it opens with a tag the ChatGPT UI emits (after "1 / 2"-style noise).
_HTML_START = re.compile(
    r"\s*<(?:div|p|pre|ol|ul|table|h[1-6]|blockquote|span|code|strong|em|b|i|br|hr)\b[^>]*>",
    re.IGNORECASE,
)
_HTML_CLOSE = re.compile(r"</(?:div|p|pre|ol|ul|li|table|h[1-6]|blockquote|code|span)>", re.I)

_UI_WRAPPER = re.compile(r"<div\b[^>]*\bclass=\"[^\"]*\bmarkdown\b[^\"]*\bprose\b", re.I)
_BLOCK_CLOSE = re.compile(r"</(?:p|li|pre|ol|ul|table|h[1-6]|blockquote)>", re.I)
_CODE_SPAN = re.compile(r"`[^`\n]*`")

_LANG_CLASS = re.compile(r"^(?:language|lang)-(.+)$")
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
# Fast path: a ``<pre>`` holding a ``<code>`` is converted with regexes before parsing, so
# the thousands of highlight.js spans inside code never become BeautifulSoup tags.
_PRE_BLOCK = re.compile(r"<pre\b[^>]*>(.*?)</pre\s*>", re.DOTALL | re.IGNORECASE)
_CODE_ELEMENT = re.compile(r"<code\b([^>]*)>(.*?)</code\s*>", re.DOTALL | re.IGNORECASE)
_CLASS_ATTR = re.compile(r"""\bclass\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_HEADER_SPAN = re.compile(r"<span\b[^>]*>([^<]*)</span\s*>", re.IGNORECASE)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^>]*>")
_PLACEHOLDER = "data-fastchat-lite-code"
_DROP_TAGS = frozenset({"button", "svg", "script", "style", "noscript", "template"})


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


def _escape_text(text: str) -> str:
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


def _code_span_text(text: str) -> str:
    """Text inside inline code: a line break becomes a space (as a renderer shows it)."""
    return text.replace("\r\n", " ").replace("\n", " ")


def _fence_for(code: str) -> str:
    longest = max((len(m) for m in _BACKTICKS.findall(code)), default=0)
    return "`" * max(3, longest + 1)


def fenced_block(code: str, language: str) -> str:
    """A fenced code block (with blank lines around) whose fence no code line can close."""
    if not code.strip():
        return ""
    fence = _fence_for(code)
    return f"\n\n{fence}{language}\n{code}\n{fence}\n\n"


def _language_from_classes(classes: list[str] | str) -> str:
    for cls in classes.split() if isinstance(classes, str) else classes:
        match = _LANG_CLASS.match(cls)
        if match:
            return match.group(1).strip()
    return ""


def _header_language(header_html: str) -> str:
    for match in _HEADER_SPAN.finditer(header_html):
        text = html_lib.unescape(match.group(1)).strip()
        if text and text.lower() != "copy code":
            return text.split()[0].strip("`")
    return ""


def extract_code_blocks(html: str) -> tuple[str, list[str]]:
    """Replace each ``<pre>...<code>...</code>...</pre>`` by a placeholder; return the blocks.

    A ``<pre>`` without ``<code>`` is left for the parser (slow path, same result).
    """
    blocks: list[str] = []

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        code = _CODE_ELEMENT.search(inner)
        if code is None or "<pre" in code.group(2).lower():
            return match.group(0)
        attrs = _CLASS_ATTR.search(code.group(1))
        language = _language_from_classes(attrs.group(1) or attrs.group(2) or "") if attrs else ""
        language = language or _header_language(inner[: code.start()])
        text = html_lib.unescape(_ANY_TAG.sub("", _BR.sub("\n", code.group(2))))
        blocks.append(fenced_block(text.strip("\n"), language))
        return f'<pre {_PLACEHOLDER}="{len(blocks) - 1}"></pre>'

    return _PRE_BLOCK.sub(replace, html), blocks


def code_language(pre: Tag) -> str:
    """The language of a ChatGPT code block: ``language-xxx`` class, else the header span."""
    code = pre.find("code")
    if isinstance(code, Tag):
        language = _language_from_classes(code.get("class") or [])
        if language:
            return language
    for span in pre.find_all("span"):
        if span.find_parent("code") is not None:
            continue
        text = span.get_text(strip=True)
        if text and text.lower() != "copy code":
            return text.split()[0].strip("`")
    return ""


def code_text(pre: Tag) -> str:
    """The code inside a ``<pre>``, without the UI's header and "Copy code" button."""
    code = pre.find("code")
    if isinstance(code, Tag):
        text = code.get_text()
    else:
        for chrome in pre.find_all(["button", "svg"]):
            chrome.decompose()
        text = pre.get_text()
    return text.strip("\n")


class _Tag(Tag):
    """bs4 Tag whose ``find_parent(name)`` is a plain parent walk.

    markdownify asks every tag ``find_parent("pre")``; bs4's generic search made that a fifth
    of the conversion time. Same answer, same API (bs4's ``element_classes`` hook).
    """

    def find_parent(self, name: Any = None, attrs: Any = None, **kwargs: Any) -> Any:
        if isinstance(name, str) and not attrs and not kwargs:
            parent = self.parent
            while parent is not None:
                if parent.name == name:
                    return parent
                parent = parent.parent
            return None
        return super().find_parent(name, attrs or {}, **kwargs)


class ChatGPTMarkdownConverter(MarkdownConverter):
    """markdownify with ChatGPT-UI code blocks and CommonMark-minimal escaping."""

    def __init__(self, **options: Any) -> None:
        defaults = {"heading_style": "atx", "bullets": "-", "escape_misc": False}
        super().__init__(**{**defaults, **options})
        self.code_blocks: list[str] = []  # from extract_code_blocks, for the current reply

    def convert_reply(self, html: str, fast: bool = True) -> str:
        html, self.code_blocks = extract_code_blocks(html)
        if fast:
            from data_prep.html.fast import fast_html_to_markdown

            text = fast_html_to_markdown(html, self.code_blocks)
            if text is not None:
                return text
        try:
            soup = BeautifulSoup(html, "html.parser", element_classes={Tag: _Tag})
            return self.convert_soup(soup)
        finally:
            self.code_blocks = []

    def process_tag(self, node: Tag, parent_tags: set[str] | None = None) -> str:
        name = node.name
        if name == "pre":  # skip walking highlight.js spans: only the text matters
            return self._fenced_block(node)
        if name in _DROP_TAGS:
            return ""
        if name == "span" and "katex" in (node.get("class") or ()):
            return _katex(node)
        return super().process_tag(node, parent_tags)

    def _fenced_block(self, pre: Tag) -> str:
        slot = pre.get(_PLACEHOLDER)
        if isinstance(slot, str) and slot.isdigit() and int(slot) < len(self.code_blocks):
            return self.code_blocks[int(slot)]
        return fenced_block(code_text(pre), code_language(pre))

    def process_text(self, el: Any, parent_tags: set[str] | None = None) -> str:
        if parent_tags and "_noformat" in parent_tags and "pre" not in parent_tags:
            return _code_span_text(str(el))  # inline code: spaces as typed
        return super().process_text(el, parent_tags)

    def escape(self, text: str, parent_tags: set[str]) -> str:
        return _escape_text(text) if text else ""

    def convert_p(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        text = super().convert_p(el, text, parent_tags)
        if "_inline" in parent_tags:
            return text
        return _BLOCK_START.sub(_escape_block_start, text)

    def _cell(self, el: Tag, text: str) -> str:
        colspan = el.get("colspan")
        wide = isinstance(colspan, str) and colspan.isdigit()
        span = max(1, min(1000, int(colspan))) if wide else 1
        cell = " ".join(text.split()).replace("|", "\\|")
        return " " + cell + " |" * span

    def convert_td(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return self._cell(el, text)

    def convert_th(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return self._cell(el, text)

    def convert_a(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        href = el.get("href")
        if isinstance(href, str) and re.search(r"[\s()<>]", href):
            el["href"] = "<" + href.replace("<", "%3C").replace(">", "%3E") + ">"
        return super().convert_a(el, text, parent_tags)


def _katex(span: Tag) -> str:
    """KaTeX math as ``$tex$`` (inline) or a ``$$`` block, from its TeX annotation."""
    annotation = span.find("annotation")
    tex = annotation.get_text().strip() if isinstance(annotation, Tag) else ""
    if not tex:
        return span.get_text()
    parent = span.parent
    display = isinstance(parent, Tag) and "katex-display" in (parent.get("class") or ())
    return f"\n\n$$\n{tex}\n$$\n\n" if display else f"${tex}$"


def _escape_block_start(match: re.Match[str]) -> str:
    indent, marker = match.group(1), match.group(2)
    if marker[0].isdigit():
        return f"{indent}{marker}\\"  # "1." -> "1\." keeps it a paragraph
    return f"{indent}\\{marker}"


_CONVERTER = ChatGPTMarkdownConverter()
_BLANK_RUNS = re.compile(r"\n{3,}")


def html_to_markdown(html: str, fast: bool = True) -> str:
    """Convert one ChatGPT-UI HTML reply to markdown (raises bs4's parser errors as is).

    ``fast`` lets well-formed replies take :mod:`data_prep.html.fast` (same output);
    ``fast=False`` always uses BeautifulSoup + markdownify.
    """
    text = _CONVERTER.convert_reply(html, fast=fast)
    return _collapse_blank_lines(text).strip()


def _collapse_blank_lines(text: str) -> str:
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
