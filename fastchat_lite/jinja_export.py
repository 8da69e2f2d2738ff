"""Export a registry template as a Hugging Face Jinja ``chat_template``.

The exported string is what a trained model carries in its tokenizer config, so vLLM, TGI or
``tokenizer.apply_chat_template`` prompt it exactly as our own server does. Assistant content
plus its end-of-turn token sit inside ``{% generation %}`` so that
``apply_chat_template(..., return_assistant_tokens_mask=True)`` reproduces our loss mask.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastchat_lite.templates import BOS, DEFAULT_TEMPLATE, EOS, Template, get_template

_PLACEHOLDER = re.compile(r"(\{bos\}|\{eos\})")


def _expr(text: str) -> str:
    """A Jinja expression that evaluates to ``text`` with {bos}/{eos} bound to the tokenizer's."""
    parts = []
    for piece in _PLACEHOLDER.split(text):
        if piece == BOS:
            parts.append("(bos_token or '')")
        elif piece == EOS:
            parts.append("(eos_token or '')")
        elif piece:
            parts.append(json.dumps(piece, ensure_ascii=False))
    return " + ".join(parts) if parts else "''"


def chat_template(name: str | Template) -> str:
    """The Jinja chat template for a registry template (same text as :func:`render_prompt`)."""
    t = get_template(name)
    first_user = (
        t.first_user_prefix_after_system
        if t.first_user_prefix_after_system is not None
        else t.user_prefix
    )
    lines = [
        "{#- fastchat-lite template: " + t.name + " -#}",
        "{%- if messages and messages[0]['role'] == 'system' -%}",
        "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}",
        "{%- else -%}",
        "{%- set system = " + _expr(t.system_message) + " -%}{%- set turns = messages -%}",
        "{%- endif -%}",
        "{{- " + _expr(t.begin) + " -}}",
        "{%- if system -%}{{- "
        + _expr(t.system_prefix)
        + " + system + "
        + _expr(t.system_suffix)
        + " -}}{%- endif -%}",
        "{%- for message in turns -%}",
        "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}",
        "{{- raise_exception('Conversation roles must alternate user/assistant/user/...') -}}",
        "{%- endif -%}",
        "{%- if message['role'] == 'user' -%}",
        "{%- if loop.first and system -%}{{- " + _expr(first_user) + " -}}"
        "{%- else -%}{{- " + _expr(t.user_prefix) + " -}}{%- endif -%}",
        "{{- message['content'] + " + _expr(t.user_suffix) + " -}}",
        "{%- elif message['role'] == 'assistant' -%}",
        "{{- " + _expr(t.assistant_prefix) + " -}}",
        "{%- generation -%}{{- message['content'] + " + _expr(t.assistant_end) + " -}}"
        "{%- endgeneration -%}",
        "{{- " + _expr(t.assistant_after) + " -}}",
        "{%- else -%}",
        "{{- raise_exception('Unknown role: ' + message['role']) -}}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- if add_generation_prompt -%}{{- " + _expr(t.generation_prompt) + " -}}{%- endif -%}",
    ]
    return "\n".join(lines)


def template_name_from_chat_template(jinja: str | None) -> str | None:
    """Recognise a chat template we exported (the first line names it); ``None`` otherwise."""
    if not jinja:
        return None
    match = re.match(r"\{#- fastchat-lite template: (\S+) -#\}", jinja)
    return match.group(1) if match else None


def template_for_tokenizer(tokenizer: Any, requested: str | None = None) -> str | None:
    """The registry template to prompt a model with, or ``None`` to use its own Jinja.

    In order: ``requested`` (raises UnknownTemplateError listing the choices); the template named
    in a chat_template we exported (what the model was trained with); ``None`` when the tokenizer
    has a foreign chat_template; :data:`DEFAULT_TEMPLATE` when it has none.
    """
    if requested:
        return get_template(requested).name
    jinja = getattr(tokenizer, "chat_template", None)
    return template_name_from_chat_template(jinja) or (None if jinja else DEFAULT_TEMPLATE)


_GENERATION_TAG = re.compile(r"\{%(-?)\s*(end)?generation\s*(-?)%\}")


def plain_chat_template(jinja: str | None) -> str | None:
    """``jinja`` without ``{% generation %}`` markers, for consumers with plain Jinja (llama.cpp,
    jinja2 without transformers' extension). Each marker becomes an always-true ``if`` with the
    same whitespace control, so the rendered text is unchanged."""
    if not jinja:
        return jinja

    def replace(match: re.Match[str]) -> str:
        left, end, right = match.groups()
        return f"{{%{left} {'endif' if end else 'if true'} {right}%}}"

    return _GENERATION_TAG.sub(replace, jinja)
