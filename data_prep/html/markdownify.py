"""The BeautifulSoup + markdownify renderer: any HTML, ~4x slower than the fast path.

:func:`data_prep.html.html_to_markdown` calls :func:`bs4_html_to_markdown` only when
:mod:`data_prep.html.fast` declines a reply (HTML outside the UI's usual subset), so bs4 and
markdownify are imported only then. What is written (escaping, fences, cells, links) comes from
:mod:`data_prep.html.rules`; this module adds the tree walk: ChatGPT code blocks left in place
(``<pre>`` without ``<code>``), KaTeX math from its TeX annotation, and dropped UI chrome
(buttons, SVG icons, scripts, styles).
"""

from __future__ import annotations

from typing import Any

from bs4 import BeautifulSoup, Comment, NavigableString, Tag
from markdownify import MarkdownConverter

from data_prep.html.rules import (
    PLACEHOLDER,
    code_span_text,
    escape_block_starts,
    escape_text,
    fenced_block,
    header_language,
    language_from_classes,
    link_destination,
    list_bullet,
    list_item,
    list_start,
    table_cell,
)

_DROP_TAGS = frozenset({"button", "svg", "script", "style", "noscript", "template"})


def code_language(pre: Tag) -> str:
    """The language of a ChatGPT code block: ``language-xxx`` class, else the header span."""
    code = pre.find("code")
    if isinstance(code, Tag):
        language = language_from_classes(code.get("class") or [])
        if language:
            return language
    for span in pre.find_all("span"):
        if span.find_parent("code") is not None:
            continue
        language = header_language(span.get_text(strip=True))
        if language:
            return language
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
        self._list_styles: dict[int, tuple[bool, bool]] = {}  # id(list) -> (loose, alternate)

    def convert_reply(self, markup: str, code_blocks: list[str]) -> str:
        """Markdown for ``markup`` whose ``<pre>`` placeholders stand for ``code_blocks``."""
        self.code_blocks = code_blocks
        try:
            soup = BeautifulSoup(markup, "html.parser", element_classes={Tag: _Tag})
            return self.convert_soup(soup)
        finally:
            self.code_blocks = []
            self._list_styles = {}

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
        slot = pre.get(PLACEHOLDER)
        if isinstance(slot, str) and slot.isdigit() and int(slot) < len(self.code_blocks):
            return self.code_blocks[int(slot)]
        return fenced_block(code_text(pre), code_language(pre))

    def process_text(self, el: Any, parent_tags: set[str] | None = None) -> str:
        if parent_tags and "_noformat" in parent_tags and "pre" not in parent_tags:
            return code_span_text(str(el))  # inline code: spaces as typed
        return super().process_text(el, parent_tags)

    def escape(self, text: str, parent_tags: set[str]) -> str:
        return escape_text(text) if text else ""

    def convert_p(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        text = super().convert_p(el, text, parent_tags)
        if "_inline" in parent_tags:
            return text
        return escape_block_starts(text)

    def convert_td(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return table_cell(text, el.get("colspan"))

    def convert_th(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return table_cell(text, el.get("colspan"))

    def convert_li(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        parent = el.parent
        if not isinstance(parent, Tag) or parent.name not in ("ol", "ul"):
            return list_item(text, list_bullet(False, 0, False), False)
        loose, alternate = self._list_style(parent)
        ordered = parent.name == "ol"
        number = 0
        if ordered:
            number = list_start(parent.get("start")) + len(el.find_previous_siblings("li"))
        return list_item(text, list_bullet(ordered, number, alternate), loose)

    def _list_style(self, lst: Tag) -> tuple[bool, bool]:
        """(loose, alternate) of a list: the same rules as the fast path's ``_set_list_style``."""
        style = self._list_styles.get(id(lst))
        if style is None:
            loose = any(
                li.find("p", recursive=False) is not None
                for li in lst.find_all("li", recursive=False)
            )
            prev = lst.previous_sibling
            while prev is not None and _renders_blank(prev):
                prev = prev.previous_sibling
            alternate = (
                isinstance(prev, Tag) and prev.name == lst.name and not self._list_style(prev)[1]
            )
            style = self._list_styles[id(lst)] = (loose, alternate)
        return style

    def convert_a(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        href = el.get("href")
        if isinstance(href, str):
            el["href"] = link_destination(href)
        return super().convert_a(el, text, parent_tags)


def _renders_blank(node: Any) -> bool:
    """True for whitespace, comments, dropped chrome and elements without text (not pre/hr)."""
    if isinstance(node, Comment):
        return True
    if isinstance(node, NavigableString):
        return not str(node).strip()
    if not isinstance(node, Tag) or node.name in ("pre", "hr"):
        return False
    if node.name in _DROP_TAGS:
        return True
    return not node.get_text().strip() and node.find(("pre", "hr")) is None


def _katex(span: Tag) -> str:
    """KaTeX math as ``$tex$`` (inline) or a ``$$`` block, from its TeX annotation."""
    annotation = span.find("annotation")
    tex = annotation.get_text().strip() if isinstance(annotation, Tag) else ""
    if not tex:
        return span.get_text()
    parent = span.parent
    display = isinstance(parent, Tag) and "katex-display" in (parent.get("class") or ())
    return f"\n\n$$\n{tex}\n$$\n\n" if display else f"${tex}$"


_CONVERTER = ChatGPTMarkdownConverter()


def bs4_html_to_markdown(markup: str, code_blocks: list[str]) -> str:
    """Markdown for placeholder-substituted ``markup`` (from ``rules.extract_code_blocks``).

    Accepts any HTML; raises bs4's parser errors as is. The caller collapses blank lines.
    """
    return _CONVERTER.convert_reply(markup, code_blocks)
