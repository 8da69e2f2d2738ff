"""Render Markdown answers as the HTML the ChatGPT web UI saved in ShareGPT dumps.

Only the subset the sample corpus uses: paragraphs, fenced code blocks (with the UI's
"Copy code" bar and highlight.js spans), bullet and numbered lists, pipe tables, and inline
``code``, ``**bold**`` and ``*italic*``. Text is HTML-escaped, so ``<``, ``&`` and quotes come
out as entities, as they did in real dumps.

The UI's chrome (the ``markdown prose`` wrapper, the code block's language header and "Copy
code" button) is defined here once: :func:`wrap_reply` and :func:`code_block_html` are also
what the data tests' fixtures and the clean benchmark build their HTML with.
"""

from __future__ import annotations

import html
import re

WRAPPER_CLASSES = (
    "markdown prose w-full break-words dark:prose-invert light",
    "markdown prose w-full break-words dark:prose-invert dark",
    "request-:r0:-0 markdown prose break-words dark:prose-invert light",
)
COPY_ICON = (
    '<svg stroke="currentColor" fill="none" stroke-width="2" viewBox="0 0 24 24" '
    'stroke-linecap="round" stroke-linejoin="round" class="h-4 w-4" height="1em" width="1em" '
    'xmlns="http://www.w3.org/2000/svg"><path d="M16 4h2a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H6a2 2 '
    '0 0 1-2-2V6a2 2 0 0 1 2-2h2"></path><rect x="8" y="2" width="8" height="4" rx="1" ry="1">'
    "</rect></svg>"
)
KEYWORDS = {
    "python": r"def|return|for|in|if|else|import|from|with|as|while|class|print|True|None",
    "javascript": r"function|const|let|return|if|else|for|of|async|await|throw|new",
    "sql": r"SELECT|FROM|WHERE|GROUP BY|ORDER BY|LIMIT|JOIN|AS|DESC|SUM",
}
_ORDERED = re.compile(r"^\d+\. ")


def _inline(text: str) -> str:
    """Escape text, then turn `code`, **bold** and *italic* into tags."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if len(part) > 1 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1], quote=False)}</code>")
            continue
        escaped = html.escape(part, quote=False)
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
        escaped = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", escaped)
        out.append(escaped)
    return "".join(out)


def _highlight(code: str, language: str) -> str:
    escaped = html.escape(code, quote=False)
    words = KEYWORDS.get(language)
    if not words:
        return escaped
    return re.sub(rf"\b({words})\b", r'<span class="hljs-keyword">\1</span>', escaped)


def code_block_html(code_html: str, language: str | None, header: str | None = None) -> str:
    """A code block as the ChatGPT UI wrapped it, around already escaped/highlighted HTML.

    ``header`` is the text of the bar above the code (default: ``language``); ``language=None``
    leaves the ``language-`` class off the ``<code>``, as some dumps did.
    """
    header_text = header if header is not None else (language or "")
    cls = "!whitespace-pre hljs" + (f" language-{language}" if language else "")
    return (
        '<pre><div class="bg-black rounded-md mb-4"><div class="flex items-center relative '
        'text-gray-200 bg-gray-800 px-4 py-2 text-xs font-sans justify-between rounded-t-md">'
        f'<span>{header_text}</span><button class="flex ml-auto gap-2">{COPY_ICON}Copy code'
        f'</button></div><div class="p-4 overflow-y-auto"><code class="{cls}">{code_html}</code>'
        "</div></div></pre>"
    )


def code_block(code: str, language: str) -> str:
    """One code block of plain ``code``: escaped, keywords highlighted (no language: bash)."""
    lang = language or "bash"
    return code_block_html(_highlight(code, lang), lang)


def _table(lines: list[str]) -> str:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    header, body = rows[0], [r for r in rows[1:] if not all(set(c) <= {"-", " "} for c in r)]
    head = "".join(f"<th>{_inline(c)}</th>" for c in header)
    cells = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def _list(lines: list[str], ordered: bool) -> str:
    tag = "ol" if ordered else "ul"
    items = "".join(
        f"<li>{_inline(_ORDERED.sub('', ln) if ordered else ln[2:])}</li>" for ln in lines
    )
    return f"<{tag}>{items}</{tag}>"


def _blocks(markdown: str) -> list[str]:
    """Markdown to a list of HTML blocks (code fences may contain blank lines)."""
    blocks: list[str] = []
    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = lines.index("```", i + 1)
            blocks.append(code_block("\n".join(lines[i + 1 : end]) + "\n", line[3:].strip()))
            i = end + 1
            continue
        if not line.strip():
            i += 1
            continue
        group = []
        while i < len(lines) and lines[i].strip() and not lines[i].startswith("```"):
            group.append(lines[i])
            i += 1
        if group[0].startswith("|"):
            blocks.append(_table(group))
        elif group[0].startswith("- "):
            blocks.append(_list(group, ordered=False))
        elif _ORDERED.match(group[0]):
            blocks.append(_list(group, ordered=True))
        else:
            blocks.append("<p>" + "<br>".join(_inline(g) for g in group) + "</p>")
    return blocks


def wrap_reply(blocks_html: str, style: int = 0) -> str:
    """HTML blocks inside the ``markdown prose`` wrapper div of a gpt turn (``style`` picks one
    of the :data:`WRAPPER_CLASSES` variants seen in dumps)."""
    wrapper = WRAPPER_CLASSES[style % len(WRAPPER_CLASSES)]
    return f'<div class="{wrapper}">{blocks_html}</div>'


def to_chatgpt_html(markdown: str, style: int = 0) -> str:
    """The gpt turn's ``value`` as a ShareGPT dump stored it."""
    return wrap_reply("".join(_blocks(markdown)), style)
