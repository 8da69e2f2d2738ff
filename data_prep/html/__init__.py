"""ChatGPT-UI HTML -> markdown: shared rules, a fast regex renderer and the BeautifulSoup path.

ShareGPT dumps store each assistant reply as the HTML the ChatGPT page rendered: a
``<div class="markdown prose ...">`` wrapper, ``<pre>`` code blocks carrying a header with the
language and a "Copy code" button, highlight.js ``<span>``s inside the code, tables, lists.
:func:`html_to_markdown` turns that back into the markdown the model should learn to write.

* :mod:`data_prep.html.rules`: what is written (escaping, code fences, table cells, links,
  list markers and looseness), shared by both renderers; also :func:`looks_like_html` and
  the code-block extraction.
* :mod:`data_prep.html.fast`: a regex tokenizer + light tree for the UI's usual HTML subset;
  declines (returns None) anything else.
* :mod:`data_prep.html.markdownify`: BeautifulSoup + markdownify for everything the fast
  renderer declines; bs4 and markdownify are imported only when that happens.

Callers decide which turns are HTML (:func:`looks_like_html`); human turns are never converted.
"""

from __future__ import annotations

from data_prep.html.fast import fast_html_to_markdown
from data_prep.html.rules import collapse_blank_lines, extract_code_blocks, looks_like_html

__all__ = ["html_to_markdown", "looks_like_html"]


def html_to_markdown(html: str, fast: bool = True) -> str:
    """Convert one ChatGPT-UI HTML reply to markdown (raises bs4's parser errors as is).

    Well-formed replies take the fast renderer; the rest go through BeautifulSoup +
    markdownify, with the same output. ``fast=False`` always takes the bs4 path (tests and
    benchmarks compare the two).
    """
    markup, code_blocks = extract_code_blocks(html)
    text = fast_html_to_markdown(markup, code_blocks) if fast else None
    if text is None:
        from data_prep.html.markdownify import bs4_html_to_markdown  # bs4: only when needed

        text = bs4_html_to_markdown(markup, code_blocks)
    return collapse_blank_lines(text).strip()
