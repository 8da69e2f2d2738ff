"""The fast HTML path gives exactly the markdown BeautifulSoup + markdownify give."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from data_fixtures import PYTHON_CODE_HTML, code_block, reply

from data_prep.html import html_to_markdown
from data_prep.html.fast import fast_html_to_markdown
from data_prep.html.rules import extract_code_blocks

CASES = [
    reply(
        "<p>Here is <strong>bold</strong>, <em>it</em>, <code>a_b * c</code> &amp; &lt;x&gt;</p>"
    ),
    reply("<p>Steps:</p>", code_block(PYTHON_CODE_HTML), "<p>Done.</p>"),
    reply("<ol><li><p>First</p><ul><li>a <code>x</code></li><li>b</li></ul></li><li>Two</li></ol>"),
    reply('<ol start="4"><li>four</li><li>five<ol><li>inner</li></ol></li></ol><p>after</p>'),
    reply("<ul>\n<li>spaced\n  item</li>\n<li> two </li>\n</ul>\n<p> trailing </p>"),
    reply(
        "<table><thead><tr><th>a</th><th>b|c</th></tr></thead><tbody><tr><td>1</td>"
        '<td colspan="2">2</td></tr><tr><td><strong>3</strong></td><td>4<br>5</td></tr>'
        "</tbody></table>"
    ),
    reply(
        "<table><tbody><tr><td>no</td><td>head</td></tr><tr><td>x</td><td>y</td></tr></tbody>"
        "</table>"
    ),
    reply("<table><tr><td>bare</td></tr><tr><td>rows</td></tr></table>"),
    reply(
        "<h1>Title</h1><h3>Sub <em>title</em></h3><hr><blockquote><p>q1</p><p>q2</p>"
        "<ul><li>in quote</li></ul></blockquote>"
    ),
    reply(
        '<p>See <a href="https://x.y/a_b">https://x.y/a_b</a> and <a href="https://a.b/c d"'
        ' title="T &quot;q&quot;">spaced</a>, <a>no href</a>.</p>'
    ),
    reply("<p>1. not a list</p><p># nor a heading</p><p>&gt; nor a quote</p><p>- nor this</p>"),
    reply("<p>line one<br>line two<br/>three</p><p></p><div><span>x</span> <span>y</span></div>"),
    reply("<p>中文 <strong>粗体</strong> 🎉 <code>`tick`</code> __init__ my_var 2 * 3</p>"),
    reply("<ol><li><p>Run:</p>" + code_block("ls\n\npwd", "bash") + "</li><li><p>x</p></li></ol>"),
    "<p>no wrapper</p><p>second</p>",
    reply("<p><strong> padded </strong>word<em></em></p>"),
    # list looseness and boundaries: both paths take the same rules from rules.py
    reply("<ol><li><p>loose</p></li><li><p>items</p></li></ol><p>after</p>"),
    reply("<ul>\n<li>\n<p>loose</p>\n</li>\n<li>\n<p>spaced</p>\n</li>\n</ul>"),
    reply("<ul><li>tight<ul><li><p>loose</p></li><li><p>inner</p></li></ul></li><li>b</li></ul>"),
    reply('<ol><li>a</li></ol><ol start="5"><li>b</li></ol>\n<ol><li>c</li></ol>'),
    reply("<ul><li>a</li></ul><p> </p><ul><li>b</li></ul><div></div><ul><li>c</li></ul>"),
    reply("<ul><li>a</li></ul>", code_block("x"), "<ul><li>b</li></ul><hr><ul><li>c</li></ul>"),
    reply("<ol><li>Run:" + code_block("ls\n\npwd", "bash") + "then</li><li>x</li></ol>"),
    reply('<ol start="3"><li><p>p</p></li></ol><p>para</p><ol start="4"><li>q</li></ol>'),
]


@pytest.mark.parametrize("html", CASES)
def test_fast_path_matches_markdownify_on_ui_fixtures(html):
    markup, blocks = extract_code_blocks(html)
    assert fast_html_to_markdown(markup, blocks) is not None  # really took the fast path
    assert html_to_markdown(html, fast=True) == html_to_markdown(html, fast=False)


@pytest.mark.parametrize(
    "html",
    [
        reply("<p>an <img src='x.png'> image</p>"),
        reply("<p>unclosed <strong>bold</p>"),
        reply("<p>a comment <!-- here --></p>"),
        reply("<p>stray < sign</p>"),
        reply('<p><a href="x" title="a>b">t</a></p>'),
        reply("<table>\n<tr><td>ws in table</td></tr></table>"),
    ],
)
def test_html_outside_the_subset_falls_back_to_markdownify(html):
    markup, blocks = extract_code_blocks(html)
    assert fast_html_to_markdown(markup, blocks) is None
    assert html_to_markdown(html) == html_to_markdown(html, fast=False)


INLINE = ["strong", "em", "b", "i", "code", "span", "a"]
TEXTS = ["word", " spaced ", "my_var", "2 * 3", "*x*", "a<b", "&", "你好", "🎉", "`q`", "\n", " "]


def _random_inline(rng: random.Random, depth: int) -> str:
    parts = []
    for _ in range(rng.randint(1, 3)):
        if depth < 2 and rng.random() < 0.4:
            tag = rng.choice(INLINE)
            attrs = ' href="https://e.x/p_q"' if tag == "a" else ""
            parts.append(f"<{tag}{attrs}>{_random_inline(rng, depth + 1)}</{tag}>")
        elif rng.random() < 0.1:
            parts.append("<br>")
        else:
            parts.append(rng.choice(TEXTS).replace("<", "&lt;").replace("&", "&amp;", 1))
    return "".join(parts)


def _random_item(rng: random.Random, depth: int) -> str:
    first = _random_block(rng, depth + 1) if rng.random() < 0.5 else _random_inline(rng, 0)
    return first + (_random_block(rng, depth + 1) if rng.random() < 0.3 else "")


def _random_block(rng: random.Random, depth: int) -> str:
    kind = rng.random()
    ws = rng.choice(["", "", "\n", " "])
    if kind < 0.35 or depth > 2:
        return f"<p>{_random_inline(rng, 0)}</p>{ws}"
    if kind < 0.6:
        tag = rng.choice(["ul", "ol"])
        items = "".join(
            f"<li>{ws}{_random_item(rng, depth)}</li>{ws}" for _ in range(rng.randint(1, 3))
        )
        return f"<{tag}>{ws}{items}</{tag}>{ws}"
    if kind < 0.7:
        level = rng.randint(1, 6)
        return f"<h{level}>{_random_inline(rng, 0)}</h{level}>{ws}"
    if kind < 0.8:
        return f"<blockquote>{_random_block(rng, depth + 1)}</blockquote>{ws}"
    if kind < 0.9:
        rows = "".join(
            "<tr>" + "".join(f"<td>{_random_inline(rng, 1)}</td>" for _ in range(2)) + "</tr>"
            for _ in range(rng.randint(1, 3))
        )
        head = "<thead><tr><th>h1</th><th>h2</th></tr></thead>" if rng.random() < 0.7 else ""
        return f"<table>{head}<tbody>{rows}</tbody></table>{ws}"
    return code_block(
        rng.choice(["x = 1", "a\n\n  b", "```\nfence\n```"]), rng.choice(["go", None])
    )


def test_fast_path_matches_markdownify_on_random_nested_html():
    rng = random.Random(1234)
    fast_taken = 0
    for _ in range(300):
        html = reply("".join(_random_block(rng, 0) for _ in range(rng.randint(1, 4))))
        markup, blocks = extract_code_blocks(html)
        fast_taken += fast_html_to_markdown(markup, blocks) is not None
        assert html_to_markdown(html, fast=True) == html_to_markdown(html, fast=False), html
    assert fast_taken > 250


def test_fast_path_imports_neither_bs4_nor_the_bs4_renderer():
    # bs4 + markdownify cost ~0.2 s at import: `data clean --help` and well-formed dumps skip it.
    code = (
        "import sys\n"
        "from data_prep.html import html_to_markdown\n"
        "import data_prep.clean\n"
        "assert html_to_markdown('<p>a <strong>b</strong></p>') == 'a **b**'\n"
        "heavy = ('bs4', 'markdownify', 'data_prep.html.markdownify')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
        "html_to_markdown('<p>an <img src=x> image</p>')  # leaves the subset: bs4 path\n"
        "print('data_prep.html.markdownify' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "True"]
