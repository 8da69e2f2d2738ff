"""Builders for realistic ShareGPT records: the HTML the ChatGPT web UI rendered, as dumped.

The markup mirrors what sharegpt.com stored (2023 UI): a ``markdown prose`` wrapper, code
blocks with a language header, an SVG "Copy code" button and highlight.js spans.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WRAPPER = '<div class="markdown prose w-full break-words dark:prose-invert light">{}</div>'
COPY_BUTTON = (
    '<button class="flex ml-auto gap-2"><svg stroke="currentColor" fill="none" '
    'stroke-width="2" viewBox="0 0 24 24" class="h-4 w-4" height="1em" width="1em" '
    'xmlns="http://www.w3.org/2000/svg"><path d="M16 4h2a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H6">'
    '</path><rect x="8" y="2" width="8" height="4" rx="1" ry="1"></rect></svg>Copy code</button>'
)


def reply(*blocks: str) -> str:
    """A gpt turn as the UI rendered it: blocks inside the ``markdown prose`` wrapper."""
    return WRAPPER.format("".join(blocks))


def code_block(code_html: str, lang: str | None = "python", header: str | None = None) -> str:
    """A ``<pre>`` code block; ``lang=None`` leaves the ``language-`` class off the code."""
    header_text = header if header is not None else (lang or "")
    cls = "!whitespace-pre hljs" + (f" language-{lang}" if lang else "")
    return (
        '<pre><div class="bg-black rounded-md mb-4"><div class="flex items-center relative '
        'text-gray-200 bg-gray-800 px-4 py-2 text-xs font-sans justify-between rounded-t-md">'
        f"<span>{header_text}</span>{COPY_BUTTON}</div>"
        f'<div class="p-4 overflow-y-auto"><code class="{cls}">{code_html}</code></div></div></pre>'
    )


PYTHON_CODE_HTML = (
    '<span class="hljs-keyword">def</span> <span class="hljs-title function_">add_items</span>'
    '(<span class="hljs-params">my_list, *args</span>):\n'
    '    <span class="hljs-string">"""Add **all** items &amp; return."""</span>\n'
    '    <span class="hljs-keyword">if</span> a &lt; b <span class="hljs-keyword">and</span> '
    'x &gt; 0:  <span class="hljs-comment"># don\'t escape __init__</span>\n'
    "\n"
    '        <span class="hljs-keyword">return</span> my_list[<span class="hljs-number">0</span>]'
)
PYTHON_CODE_TEXT = (
    "def add_items(my_list, *args):\n"
    '    """Add **all** items & return."""\n'
    "    if a < b and x > 0:  # don't escape __init__\n"
    "\n"
    "        return my_list[0]"
)


def turn(role: str, value: Any) -> dict[str, Any]:
    return {"from": role, "value": value}


def conversation(cid: str | None, *pairs: tuple[str, str]) -> dict[str, Any]:
    """A record of (human, gpt) exchanges."""
    turns = []
    for human, gpt in pairs:
        turns += [turn("human", human), turn("gpt", gpt)]
    record: dict[str, Any] = {"conversations": turns}
    if cid is not None:
        record["id"] = cid
    return record


def write_jsonl(path: Path, records: list[Any]) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            line = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
            out.write(line + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def render(markdown: str) -> str:
    """CommonMark (+ GFM tables) HTML of ``markdown``: what a reader of the data would see."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(markdown)
