"""Builders for realistic ShareGPT records: the HTML the ChatGPT web UI rendered, as dumped.

The UI chrome (the ``markdown prose`` wrapper, the code block's language header, SVG "Copy
code" button) comes from :mod:`fastchat_lite.quickstart.sample_html`, the one definition the
quickstart's sample data and the clean benchmark use too; these helpers take raw HTML blocks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastchat_lite.io import RawRecord
from fastchat_lite.quickstart import sample_html


def reply(*blocks: str) -> str:
    """A gpt turn as the UI rendered it: blocks inside the ``markdown prose`` wrapper."""
    return sample_html.wrap_reply("".join(blocks))


def code_block(code_html: str, lang: str | None = "python", header: str | None = None) -> str:
    """A ``<pre>`` code block; ``lang=None`` leaves the ``language-`` class off the code."""
    return sample_html.code_block_html(code_html, lang, header)


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


def clean_one(value: Any, config: Any = None) -> Any:
    """One record through ``data clean``'s per-record pipeline, in process."""
    from data_prep.clean import CleanConfig, Cleaner

    config = config or CleanConfig()
    return Cleaner(config, config.phrases()).clean(RawRecord(0, value))


def kept_turns(value: Any, config: Any = None) -> list[dict[str, str]]:
    """The turns ``data clean`` keeps of one record (fails if it drops the record)."""
    outcome = clean_one(value, config)
    assert outcome.reason is None, outcome
    return json.loads(outcome.line)["conversations"]
