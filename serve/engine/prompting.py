"""From a generate request to prompt token ids, with the same rules the trainer used.

Template choice, in order: ``--template``; the registry template named in the tokenizer's
exported ``chat_template`` (``template_name_from_chat_template``); the tokenizer's own
``chat_template`` via ``apply_chat_template``; ``DEFAULT_TEMPLATE``
(:func:`fastchat_lite.jinja_export.template_for_tokenizer`). Registry templates tokenize
through :func:`fastchat_lite.tokenize_prompt`, so text a user types (``</s>``, ``<|im_start|>``)
stays text and cannot inject a special token.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastchat_lite import stop_token_ids, tokenize_prompt
from fastchat_lite.errors import ConversationError
from fastchat_lite.templates import get_template
from serve.engine.base import EngineOutput
from serve.errors import InvalidRequestError
from serve.schemas import ChatMessage, SamplingParams


class PromptBuilder:
    """Tokenizes requests for one model; ``template=None`` means the tokenizer's Jinja.

    A request's ``source`` is either a raw prompt (``str``, tokenized as is) or chat messages
    (templated)."""

    def __init__(self, tokenizer: Any, template: str | None) -> None:
        self.tokenizer = tokenizer
        self.template = template
        if template is not None:
            self.stop_ids = stop_token_ids(tokenizer, template)
            self.stop_strings = list(get_template(template).stop_strings)
        else:
            eos = tokenizer.eos_token_id
            self.stop_ids = [eos] if eos is not None else []
            self.stop_strings = []
        self.max_token_chars = longest_token_chars(tokenizer)

    def min_prompt_tokens(self, source: str | list[ChatMessage]) -> int:
        """A lower bound on the prompt's token count, from its length alone (no tokenizing):
        no token of the vocabulary covers more than ``max_token_chars`` characters."""
        # Count what templates render: the text, not ``name`` (which most ignore).
        chars = len(source) if isinstance(source, str) else sum(len(m.text()) for m in source)
        return -(-chars // self.max_token_chars) if self.max_token_chars else 0

    def prompt_ids(self, source: str | list[ChatMessage]) -> list[int]:
        if isinstance(source, str):
            return list(self.tokenizer(source, add_special_tokens=True)["input_ids"])
        messages = [m.as_dict() for m in source]
        try:
            if self.template is not None:
                return tokenize_prompt(messages, self.tokenizer, self.template)
            return self._apply_chat_template(messages)
        except ConversationError as exc:
            raise InvalidRequestError(str(exc), param="messages", code="invalid_messages") from None

    def _apply_chat_template(self, messages: list[dict[str, str]]) -> list[int]:
        try:
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True
            )
        except Exception as exc:  # Jinja raise_exception() and template errors
            message = f"the model's chat template rejected the messages: {exc}"
            raise ConversationError(message) from None
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def reply_lead(self, source: str | list[ChatMessage]) -> str:
        """Leading text to drop from a chat reply (raw completions are returned verbatim)."""
        if isinstance(source, str) or self.template is None:
            return ""
        return get_template(self.template).reply_lead

    def with_template_stops(self, params: SamplingParams) -> SamplingParams:
        extra = [s for s in self.stop_strings if s not in params.stop]
        if not extra:
            return params
        return params.model_copy(update={"stop": [*params.stop, *extra]})


def longest_token_chars(tokenizer: Any) -> int:
    """Characters in the vocabulary's longest token (0: unknown, no bound).

    Byte-level BPE vocabularies spell a token one character per byte and SentencePiece ones one
    per character, so this never undercounts; a normalizer that deletes characters would break
    the bound (chat tokenizers have none that do)."""
    try:
        vocab = tokenizer.get_vocab()
    except (AttributeError, NotImplementedError):
        return 0
    return max((len(token) for token in vocab), default=0)


async def without_reply_lead(
    outputs: AsyncIterator[EngineOutput], lead: str
) -> AsyncIterator[EngineOutput]:
    """Engine outputs with ``lead`` removed from the start of the reply text."""
    async with contextlib.aclosing(outputs):
        pending = bool(lead)
        async for out in outputs:
            if pending and out.text:
                out.text = out.text.removeprefix(lead)
                pending = False
            yield out
