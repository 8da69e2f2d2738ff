"""ChatGPT-UI HTML -> markdown: each rule, checked on the markdown and on its CommonMark render."""

from __future__ import annotations

import random
import re

import pytest
from data_fixtures import PYTHON_CODE_HTML, PYTHON_CODE_TEXT, code_block, render, reply

from data_prep.html import html_to_markdown, looks_like_html


def test_code_block_becomes_fenced_block_with_language_and_no_copy_chrome():
    md = html_to_markdown(reply("<p>Here you go:</p>", code_block(PYTHON_CODE_HTML)))
    assert md == f"Here you go:\n\n```python\n{PYTHON_CODE_TEXT}\n```"
    assert "Copy code" not in md and "<svg" not in md and "hljs" not in md
    html = render(md)
    assert '<code class="language-python">' in html
    assert "my_list, *args" in html and "__init__" in html  # verbatim, no backslashes


def test_code_language_falls_back_to_the_header_span():
    md = html_to_markdown(reply(code_block("SELECT 1;", lang=None, header="sql")))
    assert md == "```sql\nSELECT 1;\n```"


def test_code_block_without_language_or_header_has_a_bare_fence():
    md = html_to_markdown(reply(code_block("echo hi", lang=None, header="")))
    assert md == "```\necho hi\n```"


def test_code_containing_backtick_fences_gets_a_longer_fence():
    code = "Use:\n```\ninner\n```"
    md = html_to_markdown(reply(code_block(code, lang="markdown")))
    assert md.startswith("````markdown\n") and md.endswith("\n````")
    assert "```\ninner\n```" in render(md)


def test_pre_without_code_element_still_drops_the_button():
    html = reply(
        "<pre><div><div><span>text</span>" + "<button>Copy code</button></div>"
        "<div>plain  text\n  kept</div></div></pre>"
    )
    md = html_to_markdown(html)
    assert "Copy code" not in md
    assert "plain  text\n  kept" in md


def test_nested_and_ordered_lists_render_as_lists():
    html = reply(
        "<ol><li><p>First step</p><ul><li>sub <strong>one</strong></li><li>sub two</li></ul>"
        "</li><li><p>Second step</p></li></ol>"
    )
    out = render(html_to_markdown(html))
    assert out.count("<ol>") == 1 and out.count("<ul>") == 1
    assert "<li>sub <strong>one</strong></li>" in out
    assert out.index("First step") < out.index("sub two") < out.index("Second step")


def test_ordered_list_start_attribute_is_kept():
    md = html_to_markdown(reply('<ol start="3"><li>three</li><li>four</li></ol>'))
    assert md == "3. three\n4. four"


def test_code_block_inside_list_item_stays_inside_the_item():
    html = reply("<ol><li><p>Run:</p>" + code_block("ls -la\n\necho done", "bash") + "</li></ol>")
    out = render(html_to_markdown(html))
    assert '<li>\n<p>Run:</p>\n<pre><code class="language-bash">ls -la\n\necho done\n' in out


def test_table_becomes_gfm_pipe_table_with_pipes_escaped():
    html = reply(
        "<table><thead><tr><th>Name</th><th>Type</th></tr></thead><tbody>"
        "<tr><td>a | b</td><td><code>int</code></td></tr>"
        "<tr><td>数据</td><td>🎉</td></tr></tbody></table>"
    )
    md = html_to_markdown(html)
    assert md.splitlines()[:2] == ["| Name | Type |", "| --- | --- |"]
    out = render(md)
    assert "<th>Name</th>" in out and "<td>a | b</td>" in out and "<td>🎉</td>" in out


def test_bold_italic_inline_code_links_headings_blockquotes():
    html = reply(
        "<h2>Set up</h2><p>Use <strong>bold</strong>, <em>italic</em> and <code>my_var*2</code>"
        ' with <a href="https://example.com/a_b">the docs</a>.</p>'
        "<blockquote><p>Note: quoted</p></blockquote><hr>"
    )
    md = html_to_markdown(html)
    assert md.startswith("## Set up\n\n")
    assert "`my_var*2`" in md  # nothing escaped inside inline code
    out = render(md)
    assert "<h2>Set up</h2>" in out
    assert "<strong>bold</strong>, <em>italic</em> and <code>my_var*2</code>" in out
    assert '<a href="https://example.com/a_b">the docs</a>' in out
    assert "<blockquote>\n<p>Note: quoted</p>\n</blockquote>" in out and "<hr />" in out


def test_html_entities_are_decoded_and_render_as_the_same_characters():
    html = reply(
        "<p>Tom &amp; Jerry: a &lt; b, it&#x27;s &quot;ok&quot; &lt;div&gt; &amp;copy;</p>"
    )
    md = html_to_markdown(html)
    assert md == 'Tom & Jerry: a < b, it\'s "ok" <div> \\&copy;'  # <div> as the model wrote it
    assert "&amp;copy;" in render(md)  # not ©


@pytest.mark.parametrize(
    ("text", "markdown"),
    [
        ("set my_var to snake_case_name", "set my_var to snake_case_name"),
        ("2 * 3 * 4 = 24", "2 * 3 * 4 = 24"),
        ("call __init__ first", "call \\_\\_init\\_\\_ first"),
        ("*not emphasis*", "\\*not emphasis\\*"),
        ("_private", "\\_private"),
    ],
)
def test_plain_text_is_escaped_only_where_commonmark_would_misread_it(text, markdown):
    md = html_to_markdown(reply(f"<p>{text}</p>"))
    assert md == markdown
    assert render(md) == f"<p>{text}</p>\n"


def test_paragraph_that_looks_like_a_list_or_heading_stays_a_paragraph():
    md = html_to_markdown(reply("<p>1. not a list</p><p># not a heading</p><p>- no</p>"))
    assert render(md) == "<p>1. not a list</p>\n<p># not a heading</p>\n<p>- no</p>\n"
    md = html_to_markdown(reply("<p>title<br>---<br>===<br>~~~ not a fence</p>"))
    assert render(md) == "<p>title<br />\n---<br />\n===<br />\n~~~ not a fence</p>\n"


def test_chinese_and_emoji_survive():
    md = html_to_markdown(
        reply("<p>你好，世界！<strong>加粗</strong> 🎉🚀</p><ul><li>列表 👍</li></ul>")
    )
    assert md == "你好，世界！**加粗** 🎉🚀\n\n- 列表 👍"


def _katex(tex: str, display: bool = False) -> str:
    inner = (
        '<span class="katex"><span class="katex-mathml"><math><semantics><mrow><msup><mi>x'
        f'</mi><mn>2</mn></msup></mrow><annotation encoding="application/x-tex">{tex}'
        '</annotation></semantics></math></span><span class="katex-html" aria-hidden="true">'
        '<span class="base"><span class="mord">x</span><span class="msupsub">2</span></span>'
        "</span></span>"
    )
    if display:
        return f'<span class="math math-display"><span class="katex-display">{inner}</span></span>'
    return f'<span class="math math-inline">{inner}</span>'


def test_katex_math_becomes_tex_between_dollars():
    md = html_to_markdown(reply(f"<p>Area is {_katex('x^2')} here.</p>", _katex("a_1+b", True)))
    assert md == "Area is $x^2$ here.\n\n$$\na_1+b\n$$"


def test_inline_code_keeps_its_spaces():
    md = html_to_markdown(reply("<p>Run <code>a  =  b</code> or <code>x\ny</code></p>"))
    assert md == "Run `a  =  b` or `x y`"
    assert "<code>a  =  b</code>" in render(md)


def test_no_html_tags_are_left():
    md = html_to_markdown(
        reply("<p>a<br>b</p>", code_block(PYTHON_CODE_HTML), "<div><span>x</span></div>")
    )
    assert "<div" not in md and "<span" not in md and "<p>" not in md and "<br" not in md


def test_only_ui_html_is_detected_as_html():
    assert looks_like_html(reply("<p>hi</p>"))
    assert looks_like_html("<p>hi</p>")
    assert not looks_like_html('What does <div class="x"> do?')
    assert not looks_like_html("Use `<div>` here, then </div>")
    assert not looks_like_html("plain text")
    assert looks_like_html("Sure! " + reply("<p>hi</p>"))  # text before the wrapper
    assert looks_like_html("Here:<p>one</p><ul><li>two</li></ul>")
    assert not looks_like_html("Close it with `</p>` and `</li>`.")
    assert not looks_like_html("Example:\n```html\n<p>x</p>\n```")


def test_whole_reply_renders_like_the_markdown_the_model_wrote():
    """The grading view: CommonMark renders of ours and of the intended markdown agree."""
    html = reply(
        "<h3>安装 🎉</h3><p>Install it with <code>pip install my_pkg</code> &amp; check "
        '<a href="https://example.com/docs">the docs</a>:</p>',
        code_block(PYTHON_CODE_HTML),
        "<ol><li><p><strong>Create</strong> a file:</p><ul><li>name it <code>main.py</code></li>"
        "<li>use <em>UTF-8</em></li></ul></li><li><p>Run it.</p></li></ol>",
        "<table><thead><tr><th>Flag</th><th>Meaning</th></tr></thead><tbody><tr><td>"
        "<code>-v</code></td><td>verbose &lt;on&gt;</td></tr></tbody></table>",
        "<blockquote><p>Note: it&#x27;s 2 * 3 = 6.</p></blockquote>",
    )
    intended = (
        "### 安装 🎉\n\nInstall it with `pip install my_pkg` & check "
        "[the docs](https://example.com/docs):\n\n"
        f"```python\n{PYTHON_CODE_TEXT}\n```\n\n"
        "1. **Create** a file:\n\n   * name it `main.py`\n   * use *UTF-8*\n\n2. Run it.\n\n"
        "| Flag | Meaning |\n|------|---------|\n| `-v` | verbose <on> |\n\n"
        "> Note: it's 2 * 3 = 6.\n"
    )
    ours = html_to_markdown(html)
    assert render(ours) == render(intended)


def _html_shape(html: str) -> str:
    """HTML without the whitespace a renderer puts around block tags (it shows nothing)."""
    return re.sub(r"\s*(</?(?:ul|ol|li|p|pre)\b[^>]*>)\s*", r"\1", html.strip())


_CODE_SHOWN = '<pre><code class="language-{}">{}\n</code></pre>'

# (HTML, the markdown we want, what a CommonMark renderer should show: None = the HTML itself)
LIST_CASES = [
    pytest.param(
        "<ol><li><p>one</p></li><li><p>two</p></li></ol>", "1. one\n\n2. two", None, id="loose"
    ),
    pytest.param("<ul><li>a</li><li>b</li></ul>", "- a\n- b", None, id="tight"),
    pytest.param(
        "<ol><li><p>one</p><ul><li>x</li><li>y</li></ul></li><li><p>two</p></li></ol>",
        "1. one\n\n   - x\n   - y\n\n2. two",
        None,
        id="loose-outer-tight-inner",
    ),
    pytest.param(
        "<ul><li>a<ul><li><p>x</p></li><li><p>y</p></li></ul></li><li>b</li></ul>",
        "- a\n  - x\n\n  - y\n- b",
        None,
        id="tight-outer-loose-inner",
    ),
    pytest.param(
        '<ol><li>a</li><li>b</li></ol><ol start="7"><li>c</li></ol>',
        "1. a\n2. b\n\n7) c",
        None,
        id="adjacent-ol-keeps-start",
    ),
    pytest.param(
        "<ol><li>a</li></ol>\n<ol><li>b</li></ol>", "1. a\n\n1) b", None, id="adjacent-ol"
    ),
    pytest.param(
        "<ul><li>a</li></ul><ul><li>b</li></ul><ul><li>c</li></ul>",
        "- a\n\n* b\n\n- c",
        None,
        id="adjacent-ul",
    ),
    pytest.param(
        "<ul><li>a</li></ul><p> </p><ul><li>b</li></ul>",
        "- a\n\n* b",
        "<ul><li>a</li></ul><ul><li>b</li></ul>",
        id="ul-empty-paragraph-ul",
    ),
    pytest.param(
        '<ol><li>a</li></ol><p>para</p><ol start="2"><li>b</li></ol>',
        "1. a\n\npara\n\n2. b",
        None,
        id="ol-paragraph-ol",
    ),
    pytest.param(
        "<ol><li><p>one</p></li><li><p>two</p></li></ol><p>after</p>",
        "1. one\n\n2. two\n\nafter",
        None,
        id="loose-then-paragraph",
    ),
    pytest.param("<ul><li>a</li></ul><ol><li>b</li></ol>", "- a\n\n1. b", None, id="ul-then-ol"),
    pytest.param(
        "<ol><li>Run:" + code_block("ls", "bash") + "</li><li>then</li></ol>",
        "1. Run:\n   ```bash\n   ls\n   ```\n2. then",
        "<ol><li>Run:" + _CODE_SHOWN.format("bash", "ls") + "</li><li>then</li></ol>",
        id="tight-item-with-code",
    ),
    pytest.param(
        "<ol><li>a</li></ol>" + code_block("x = 1") + '<ol start="2"><li>b</li></ol>',
        "1. a\n\n```python\nx = 1\n```\n\n2. b",
        "<ol><li>a</li></ol>"
        + _CODE_SHOWN.format("python", "x = 1")
        + '<ol start="2"><li>b</li></ol>',
        id="ol-code-ol",
    ),
]


@pytest.mark.parametrize(("html", "expected", "shown"), LIST_CASES)
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "bs4"])
def test_lists_keep_looseness_boundaries_and_numbers_in_both_paths(html, expected, shown, fast):
    ours = html_to_markdown(reply(html), fast=fast)
    assert ours == expected
    assert render(ours) == render(expected)
    assert _html_shape(render(ours)) == _html_shape(shown or html)  # what the UI showed


def _random_list(rng: random.Random, depth: int, after_text: bool = False) -> str:
    """A list as a CommonMark renderer emits it: all items loose (``<p>``) or none."""
    tag = rng.choice(["ul", "ol"])
    loose = rng.random() < 0.5
    # An ordered list interrupting an item's text must start at 1 (CommonMark).
    start = None if after_text else rng.choice([None, None, 3, 10])
    items = []
    for _ in range(rng.randint(2, 3) if loose else rng.randint(1, 3)):
        text = rng.choice(["alpha", "beta <strong>b</strong>", "gamma <code>x_y</code>"])
        inner = f"<p>{text}</p>" if loose else text
        if depth < 2 and rng.random() < 0.4:
            inner += _random_list(rng, depth + 1, after_text=not loose)
        items.append(f"<li>{inner}</li>")
    attr = f' start="{start}"' if tag == "ol" and start else ""
    return f"<{tag}{attr}>{''.join(items)}</{tag}>"


def test_random_nested_lists_render_like_the_html_they_came_from():
    rng = random.Random(7)
    for _ in range(200):
        html = "".join(
            _random_list(rng, 0) if rng.random() < 0.7 else "<p>para</p>"
            for _ in range(rng.randint(1, 4))
        )
        for fast in (True, False):
            ours = html_to_markdown(reply(html), fast=fast)
            assert _html_shape(render(ours)) == _html_shape(html), (html, ours)
