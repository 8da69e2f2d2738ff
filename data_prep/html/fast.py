"""The fast renderer for the common, well-formed ChatGPT-UI HTML, same output as markdownify.

BeautifulSoup tree building plus markdownify's generic walk cost ~2 ms per reply, most of it
per-tag bookkeeping. ChatGPT's HTML is a small, minified, strictly nested subset, so this
module tokenizes it with one regex, builds a light tree and renders it with a port of exactly
the markdownify 1.x rules :class:`~data_prep.html.markdownify.ChatGPTMarkdownConverter` uses
(the same whitespace handling, newline collapsing and ``convert_*`` results); escaping, fences,
cells and links come from :mod:`data_prep.html.rules`, as they do for the bs4 path.

Anything outside the subset - another tag, a comment, ``<`` that starts no tag, an unclosed
or misnested element, whitespace-only text inside table structure - returns ``None`` and the
caller (:func:`data_prep.html.html_to_markdown`) uses BeautifulSoup + markdownify.
tests/test_data_fast_markdown.py checks both paths give identical markdown on every fixture
and on a generated dump.
"""

from __future__ import annotations

import html as html_lib
import re

from data_prep.html.rules import (
    PLACEHOLDER,
    code_span_text,
    colspan_width,
    escape_block_starts,
    escape_text,
    link_destination,
    list_bullet,
    list_item,
    list_start,
    longest_backtick_run,
    table_cell,
)

_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)([^<>]*?)(/?)>|([^<]+)|(<)")
_ATTR = re.compile(r"""([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_HEADINGS = frozenset(f"h{n}" for n in range(1, 7))
_TABLE_TAGS = frozenset({"table", "thead", "tbody", "tr", "td", "th"})
# markdownify's should_remove_whitespace_inside / _outside sets.
_BLOCK_INSIDE = frozenset({"p", "blockquote", "div", "ol", "ul", "li"}) | _TABLE_TAGS | _HEADINGS
_BLOCK_OUTSIDE = _BLOCK_INSIDE | {"pre"}
_ALLOWED = _BLOCK_INSIDE | {"span", "strong", "b", "em", "i", "code", "a", "br", "hr", "pre"}
_VOID = frozenset({"br", "hr"})
_ALWAYS_RENDERED = frozenset({"pre", "hr"})  # no text, yet not blank between two lists
_TABLE_PARTS = frozenset({"table", "thead", "tbody", "tr"})
_ATTR_TAGS = frozenset({"ol", "a", "td", "th", "pre"})
_INLINE_CTX = frozenset({"td", "th"}) | _HEADINGS
_NOFORMAT_CTX = frozenset({"code", "pre"})
_WS_NEWLINE = re.compile(r"[\t \r\n]*[\r\n][\t \r\n]*")
_WS = re.compile(r"[\t ]+")
_ALL_WS = re.compile(r"[\t \r\n]+")
_EXTRACT_NL = re.compile(r"^(\n*)((?:.*[^\n])?)(\n*)$", re.DOTALL)
_LINE = re.compile(r"^(.*)", re.MULTILINE)


class _Node:
    __slots__ = (
        "alternate",
        "attrs",
        "children",
        "li_count",
        "loose",
        "name",
        "next",
        "ordinal",
        "parent",
        "prev",
        "text",
    )

    def __init__(self, name: str | None, parent: _Node | None, text: str = "") -> None:
        self.name = name  # None for a text node
        self.parent = parent
        self.text = text
        self.attrs: dict[str, str] = {}
        self.children: list[_Node] = []
        self.prev: _Node | None = None
        self.next: _Node | None = None
        self.li_count = 0  # <li> children so far
        self.ordinal = 0  # for an <li>: how many <li> siblings precede it
        self.loose = False  # for a list: its items hold paragraphs
        self.alternate = False  # for a list: it follows a list of its type (other marker)


class _Unsupported(Exception):
    """The input leaves the subset: use the bs4 path."""


def _parse(markup: str) -> _Node:
    root = _Node("[document]", None)
    node = root
    for m in _TOKEN.finditer(markup):
        closing, name, attrs, self_closing, text, stray = m.groups()
        if stray is not None:
            raise _Unsupported
        if text is not None:
            _append(node, _Node(None, node, html_lib.unescape(text)))
            continue
        name = name.lower()
        if name not in _ALLOWED or attrs.count('"') % 2 or attrs.count("'") % 2:
            raise _Unsupported  # another tag, or a quoted ">" we would cut at
        if closing:
            if node.name != name:
                raise _Unsupported
            node = node.parent  # type: ignore[assignment]
            continue
        child = _Node(name, node)
        if name in _ATTR_TAGS and attrs:
            for a in _ATTR.finditer(attrs):
                value = a.group(2) if a.group(2) is not None else a.group(3) or a.group(4) or ""
                child.attrs[a.group(1).lower()] = html_lib.unescape(value)
        _append(node, child)
        if name not in _VOID and not self_closing:
            node = child
    if node is not root:
        raise _Unsupported
    return root


def _append(parent: _Node, child: _Node) -> None:
    if child.name is None and parent.name in _TABLE_PARTS:
        raise _Unsupported  # markdownify's row logic sees such text: keep it on the bs4 path
    if child.name == "li":
        child.ordinal = parent.li_count
        parent.li_count += 1
    if parent.children:
        last = parent.children[-1]
        last.next, child.prev = child, last
    parent.children.append(child)


def _inside(node: _Node | None) -> bool:
    return node is not None and node.name in _BLOCK_INSIDE


def _outside(node: _Node | None) -> bool:
    return node is not None and node.name in _BLOCK_OUTSIDE


class FastRenderer:
    """Renders the light tree; ``code_blocks`` are the fenced blocks for pre placeholders."""

    def __init__(self, code_blocks: list[str]) -> None:
        self.code_blocks = code_blocks

    def tag(self, node: _Node, inline: bool, noformat: bool, in_li: bool) -> str:
        name = node.name
        if name == "pre":
            slot = node.attrs.get(PLACEHOLDER, "")
            if not slot.isdigit() or int(slot) >= len(self.code_blocks):
                raise _Unsupported
            return self.code_blocks[int(slot)]
        remove_inside = name in _BLOCK_INSIDE
        child_inline = inline or name in _INLINE_CTX
        child_noformat = noformat or name in _NOFORMAT_CTX
        child_li = in_li or name == "li"
        if name in ("ol", "ul"):
            _set_list_style(node)
        strings = []
        for el in node.children:
            if el.name is None:
                if not el.text.strip():
                    if remove_inside and (el.prev is None or el.next is None):
                        continue
                    if _outside(el.prev) or _outside(el.next):
                        continue
                s = self.text(el, noformat=child_noformat)
            else:
                s = self.tag(el, child_inline, child_noformat, child_li)
            if s:
                strings.append(s)
        text = _collapse(strings)
        return self.convert(node, text, inline, noformat, in_li)

    def text(self, el: _Node, noformat: bool) -> str:
        if noformat:
            return code_span_text(el.text)
        text = _WS.sub(" ", _WS_NEWLINE.sub("\n", el.text))
        text = escape_text(text) if text else ""
        if _outside(el.prev) or (_inside(el.parent) and el.prev is None):
            text = text.lstrip(" \t\r\n")
        if _outside(el.next) or (_inside(el.parent) and el.next is None):
            text = text.rstrip()
        return text

    def convert(self, node: _Node, text: str, inline: bool, noformat: bool, in_li: bool) -> str:
        name = node.name
        if name in ("span", "thead", "tbody", "[document]"):
            return text.strip("\n") if name == "[document]" else text
        if name in ("strong", "b", "em", "i"):
            if noformat:
                return text
            mark = "**" if name in ("strong", "b") else "*"
            return _chomped(text, mark, mark)
        if name == "code":
            return text if noformat else _inline_code(text)
        if name == "p":
            if inline:
                return " " + text.strip(" \t\r\n") + " "
            text = text.strip(" \t\r\n")
            return f"\n\n{escape_block_starts(text)}\n\n" if text else ""
        if name == "div":
            if inline:
                return " " + text.strip() + " "
            text = text.strip()
            return f"\n\n{text}\n\n" if text else ""
        if name in ("ol", "ul"):
            return _list(node, text, in_li)
        if name == "li":
            return _li(node, text)
        if name[0] == "h" and name[1:].isdigit():
            if inline:
                return text
            return f"\n\n{'#' * int(name[1:])} {_ALL_WS.sub(' ', text.strip())}\n\n"
        if name == "a":
            return text if noformat else _link(node, text)
        return _block_misc(node, text, inline)


def _collapse(strings: list[str]) -> str:
    """markdownify's newline collapsing at child boundaries (max of the two, at most 2)."""
    out = [""]
    for s in strings:
        leading, content, trailing = _EXTRACT_NL.match(s).groups()  # type: ignore[union-attr]
        if out[-1] and leading:
            prev = out.pop()
            leading = "\n" * min(2, max(len(prev), len(leading)))
        out.extend((leading, content, trailing))
    return "".join(out)


def _chomped(text: str, before: str, after: str) -> str:
    prefix = " " if text and text[0] == " " else ""
    suffix = " " if text and text[-1] == " " else ""
    text = text.strip()
    return f"{prefix}{before}{text}{after}{suffix}" if text else ""


def _inline_code(text: str) -> str:
    prefix = " " if text and text[0] == " " else ""
    suffix = " " if text and text[-1] == " " else ""
    text = text.strip()
    if not text:
        return ""
    longest = longest_backtick_run(text)
    delimiter = "`" * (longest + 1)
    if longest:
        text = f" {text} "
    return f"{prefix}{delimiter}{text}{delimiter}{suffix}"


def _link(node: _Node, text: str) -> str:
    prefix = " " if text and text[0] == " " else ""
    suffix = " " if text and text[-1] == " " else ""
    text = text.strip()
    if not text:
        return ""
    href, title = node.attrs.get("href"), node.attrs.get("title")
    if href:
        href = link_destination(href)
    if href and text.replace(r"\_", "_") == href and not title:
        return f"<{href}>"
    title_part = ' "{}"'.format(title.replace('"', r"\"")) if title else ""
    return f"{prefix}[{text}]({href}{title_part}){suffix}" if href else text


def _next_block_sibling(node: _Node) -> _Node | None:
    el = node.next
    while el is not None and el.name is None and not el.text.strip():
        el = el.next
    return el


def _list(node: _Node, text: str, in_li: bool) -> str:
    sibling = _next_block_sibling(node)
    before_paragraph = sibling is not None and sibling.name not in ("ul", "ol")
    if in_li:
        return "\n" + text.rstrip()
    return "\n\n" + text + ("\n" if before_paragraph else "")


def _set_list_style(node: _Node) -> None:
    """Loose or tight, and which marker: the same rules as the bs4 path's ``_list_style``."""
    node.loose = any(
        li.name == "li" and any(c.name == "p" for c in li.children) for li in node.children
    )
    prev = node.prev
    while prev is not None and _renders_blank(prev):
        prev = prev.prev
    node.alternate = prev is not None and prev.name == node.name and not prev.alternate


def _renders_blank(node: _Node) -> bool:
    if node.name is None:
        return not node.text.strip()
    return node.name not in _ALWAYS_RENDERED and all(_renders_blank(c) for c in node.children)


def _li(node: _Node, text: str) -> str:
    parent = node.parent
    if parent is None or parent.name not in ("ol", "ul"):
        return list_item(text, list_bullet(False, 0, False), False)
    ordered = parent.name == "ol"
    number = list_start(parent.attrs.get("start")) + node.ordinal if ordered else 0
    return list_item(text, list_bullet(ordered, number, parent.alternate), parent.loose)


def _block_misc(node: _Node, text: str, inline: bool) -> str:
    name = node.name
    if name == "br":
        return text + " " if inline else "  \n" + text
    if name == "hr":
        return "\n\n---\n\n"
    if name == "blockquote":
        text = text.strip(" \t\r\n")
        if inline:
            return " " + text + " "
        if not text:
            return "\n"
        text = _LINE.sub(lambda m: "> " + m.group(1) if m.group(1) else ">", text)
        return "\n" + text + "\n\n"
    if name == "table":
        return "\n\n" + text.strip() + "\n\n"
    if name in ("td", "th"):
        return table_cell(text, node.attrs.get("colspan"))
    if name == "tr":
        return _row(node, text)
    raise _Unsupported


def _row(node: _Node, text: str) -> str:
    """markdownify's ``convert_tr`` (header row, or an empty header before the first row)."""
    cells = [c for c in node.children if c.name in ("td", "th")]
    parent = node.parent
    assert parent is not None
    prev_tag = node.prev
    while prev_tag is not None and prev_tag.name is None:
        prev_tag = prev_tag.prev
    first = prev_tag is None
    rows_in_parent = [c for c in parent.children if c.name == "tr"]
    head = all(c.name == "th" for c in cells) or (
        parent.name == "thead" and len(rows_in_parent) == 1
    )
    table = parent.parent if parent.name != "table" else parent
    has_thead = table is not None and any(c.name == "thead" for c in table.children)
    missing = (first and parent.name != "tbody") or (
        first and parent.name == "tbody" and not has_thead
    )
    width = sum(colspan_width(c.attrs.get("colspan")) for c in cells)
    over = under = ""
    parent_prev = parent.prev
    while parent_prev is not None and parent_prev.name is None:
        parent_prev = parent_prev.prev
    if head and first:
        under = "| " + " | ".join(["---"] * width) + " |\n"
    elif missing or (
        first and (parent.name == "table" or (parent.name == "tbody" and parent_prev is None))
    ):
        over = (
            "| " + " | ".join([""] * width) + " |\n" + "| " + " | ".join(["---"] * width) + " |\n"
        )
    return over + "|" + text + "\n" + under


def fast_html_to_markdown(markup: str, code_blocks: list[str]) -> str | None:
    """Markdown for placeholder-substituted ``markup``, or None when it leaves the subset."""
    try:
        root = _parse(markup)
        return FastRenderer(code_blocks).tag(root, False, False, False)
    except (_Unsupported, RecursionError):
        return None
