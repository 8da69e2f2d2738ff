"""Tokenize a conversation and build its loss mask from the template's segments.

How it works, and why it is exact:

1. The template renders the conversation as segments (:func:`render_segments`); each knows
   whether the template or a person wrote it and whether the loss covers it.
2. Ordinary conversations are tokenized as one rendered text with offsets, so the ids equal
   ``tokenizer(rendered_text, add_special_tokens=False)`` - what the server feeds the model.
   When a message contains the text of an added token (``</s>``, ``<|im_start|>`` ...), the
   rendered text is instead cut at the special tokens the template itself emitted; those
   become their ids and every stretch between them is tokenized with special-token parsing
   off, so the typed ``</s>`` stays text and cannot inject a token or shift the mask.
3. A token is trained when its character span overlaps an assistant reply or its end-of-turn
   token: the same rule transformers applies to ``{% generation %}`` blocks, so the mask equals
   ``apply_chat_template(..., return_assistant_tokens_mask=True)`` with our exported template.

Nothing is re-split or offset by magic numbers, so a role string inside a message cannot shift
the mask (FastChat's "tokenization mismatch").

Truncation rule (``max_length``): whole trailing exchanges (user turn + assistant reply) are
dropped until the sample fits. If even the first exchange does not fit, the ids are cut at
``max_length``: the kept part of the first reply is trained with its full context before it.
If no trained token survives, :class:`NoTrainableTokensError` is raised so callers count it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastchat_lite.errors import NoTrainableTokensError
from fastchat_lite.messages import Message, to_messages
from fastchat_lite.templates import (
    DEFAULT_TEMPLATE,
    Segment,
    Template,
    get_template,
    render_segments,
)

IGNORE_INDEX = -100


class Tokenizer(Protocol):  # the parts of a transformers fast tokenizer we use
    bos_token: str | None
    eos_token: str | None

    def __call__(self, text: str, **kwargs: Any) -> Any: ...

    def convert_tokens_to_ids(self, token: str) -> int | None: ...


@dataclass
class EncodedConversation:
    """Ids, labels and what truncation did. ``labels`` is -100 wherever no loss is taken."""

    input_ids: list[int]
    labels: list[int]
    turns_dropped: int = 0  # messages removed by turn-boundary truncation
    hard_truncated: bool = False  # ids were cut inside the first exchange
    turn_of_token: list[int] = field(default_factory=list, repr=False)

    @property
    def truncated(self) -> bool:
        return self.turns_dropped > 0 or self.hard_truncated

    @property
    def num_trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _special_ids(tokenizer: Tokenizer, template: Template) -> dict[str, int]:
    """Special-token texts the template may emit, mapped to ids the tokenizer really has."""
    candidates = {tokenizer.bos_token, tokenizer.eos_token, *template.special_texts}
    found: dict[str, int] = {}
    unk = getattr(tokenizer, "unk_token_id", None)
    for text in candidates:
        if not text:
            continue
        token_id = tokenizer.convert_tokens_to_ids(text)
        if token_id is not None and token_id != unk:
            found[text] = token_id
    return found


def _split_template_text(text: str, specials: dict[str, int]) -> list[tuple[str, int | None]]:
    """Cut template-written text into (piece, special id or None)."""
    pieces: list[tuple[str, int | None]] = []
    rest = text
    while rest:
        hits = [(rest.find(s), s) for s in specials if s in rest]
        if not hits:
            pieces.append((rest, None))
            break
        pos, special = min(hits, key=lambda h: (h[0], -len(h[1])))
        if pos:
            pieces.append((rest[:pos], None))
        pieces.append((special, specials[special]))
        rest = rest[pos + len(special) :]
    return pieces


def _encode_text(
    tokenizer: Tokenizer, text: str, *, parse_special: bool
) -> tuple[list[int], list[tuple[int, int]]]:
    encoding = tokenizer(
        text,
        add_special_tokens=False,
        split_special_tokens=not parse_special,
        return_offsets_mapping=True,
    )
    return list(encoding["input_ids"]), [tuple(o) for o in encoding["offset_mapping"]]


def _added_token_texts(tokenizer: Tokenizer, specials: dict[str, int]) -> set[str]:
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    texts = {getattr(token, "content", str(token)) for token in added.values()}
    return {t for t in texts | set(specials) if t}


def _runs(
    segments: list[Segment], specials: dict[str, int], isolate: bool
) -> list[tuple[str, int | None, bool, int]]:
    """Character runs (text, special id or None, trained, turn); with ``isolate`` the
    template's special tokens are cut out so the text between them can be tokenized with
    special-token parsing off."""
    runs: list[tuple[str, int | None, bool, int]] = []
    for seg in segments:
        if seg.kind == "template" and isolate:
            for piece, special in _split_template_text(seg.text, specials):
                runs.append((piece, special, seg.trained, seg.turn))
        else:
            runs.append((seg.text, None, seg.trained, seg.turn))
    return runs


def encode_segments(
    segments: list[Segment], tokenizer: Tokenizer, template: Template
) -> EncodedConversation:
    """Token ids + labels for rendered segments (no truncation).

    When no message contains the text of an added token, the rendered text is tokenized in
    one call, so the ids are exactly ``tokenizer(text, add_special_tokens=False)`` for every
    tokenizer (including SentencePiece-style ones that prepend "▁" only at the very start).
    Otherwise the template's own special tokens are cut out and the text between them is
    tokenized with special-token parsing off, so typed ``</s>`` stays text.
    """
    specials = _special_ids(tokenizer, template)
    added = _added_token_texts(tokenizer, specials)
    isolate = any(
        seg.kind == "content" and any(text in seg.text for text in added) for seg in segments
    )
    ids: list[int] = []
    trained: list[bool] = []
    turns: list[int] = []
    stretch: list[tuple[str, bool, int]] = []  # runs tokenized together

    def flush() -> None:
        if not stretch:
            return
        text = "".join(r[0] for r in stretch)
        char_trained, char_turn = [], []
        for piece, is_trained, turn in stretch:
            char_trained.extend([is_trained] * len(piece))
            char_turn.extend([turn] * len(piece))
        stretch_ids, offsets = _encode_text(tokenizer, text, parse_special=not isolate)
        for token_id, (start, end) in zip(stretch_ids, offsets, strict=True):
            span = range(start, max(end, start + 1)) if start < len(text) else range(0)
            ids.append(token_id)
            trained.append(any(char_trained[i] for i in span))
            turns.append(max((char_turn[i] for i in span), default=char_turn[-1]))
        stretch.clear()

    for text, special, is_trained, turn in _runs(segments, specials, isolate):
        if special is None:
            stretch.append((text, is_trained, turn))
        else:
            flush()
            ids.append(special)
            trained.append(is_trained)
            turns.append(turn)
    flush()
    labels = [t if keep else IGNORE_INDEX for t, keep in zip(ids, trained, strict=True)]
    return EncodedConversation(ids, labels, turn_of_token=turns)


def _truncate(encoded: EncodedConversation, max_length: int, first_turn: int) -> None:
    """Apply the module's truncation rule in place."""
    if len(encoded.input_ids) <= max_length:
        return
    turns = encoded.turn_of_token
    last_turn = max(turns)
    # Exchanges end at assistant turns; keep the longest prefix ending at a reply that fits.
    cut = None
    for end_turn in range(last_turn, first_turn, -1):
        if (end_turn - first_turn) % 2 == 0:  # user turn: not an exchange end
            continue
        length = sum(1 for t in turns if t <= end_turn)
        if length <= max_length:
            cut = (length, last_turn - end_turn)
            break
    if cut is None:
        length, dropped, hard = max_length, max(0, last_turn - first_turn - 1), True
    else:
        (length, dropped), hard = cut, False
    encoded.input_ids = encoded.input_ids[:length]
    encoded.labels = encoded.labels[:length]
    encoded.turn_of_token = turns[:length]
    encoded.turns_dropped = dropped
    encoded.hard_truncated = hard


def encode_conversation(
    conversation: Iterable[Message | Mapping[str, Any]] | Mapping[str, Any],
    tokenizer: Tokenizer,
    template: str | Template = DEFAULT_TEMPLATE,
    max_length: int | None = None,
) -> EncodedConversation:
    """Like :func:`tokenize_conversation`, with truncation details for counting."""
    tpl = get_template(template)
    messages = to_messages(conversation)
    segments = render_segments(
        messages, tpl, bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token
    )
    encoded = encode_segments(segments, tokenizer, tpl)
    if max_length is not None:
        _truncate(encoded, max_length, first_turn=0)
    if encoded.num_trained == 0:
        raise NoTrainableTokensError(
            "no assistant token left to train on"
            + (f" after truncation to max_length={max_length}" if encoded.truncated else "")
        )
    return encoded


def tokenize_conversation(
    conversation: Iterable[Message | Mapping[str, Any]] | Mapping[str, Any],
    tokenizer: Tokenizer,
    template: str | Template = DEFAULT_TEMPLATE,
    max_length: int | None = None,
) -> dict[str, list[int]]:
    """Token ids and HF-style labels (-100 where no loss) for one conversation.

    ``conversation`` is a list of ShareGPT turns or OpenAI messages (or a record holding one).
    Only assistant replies and their end-of-turn token are trained. Raises
    :class:`~fastchat_lite.errors.ConversationError` for a malformed conversation and
    :class:`~fastchat_lite.errors.NoTrainableTokensError` when nothing is left to train.
    """
    encoded = encode_conversation(conversation, tokenizer, template, max_length)
    return {"input_ids": encoded.input_ids, "labels": encoded.labels}


def tokenize_prompt(
    messages: Iterable[Message | Mapping[str, Any]],
    tokenizer: Tokenizer,
    template: str | Template = DEFAULT_TEMPLATE,
) -> list[int]:
    """Ids of a serving prompt ending in the generation prompt (same rules as training)."""
    tpl = get_template(template)
    segments = render_segments(
        to_messages(list(messages)),
        tpl,
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
        add_generation_prompt=True,
    )
    return encode_segments(segments, tokenizer, tpl).input_ids


def stop_token_ids(tokenizer: Tokenizer, template: str | Template) -> list[int]:
    """Ids that end a reply: the template's end-of-turn token and the tokenizer's EOS."""
    tpl = get_template(template)
    specials = _special_ids(tokenizer, tpl)
    texts = {tpl.end_of_turn(tokenizer.eos_token), tokenizer.eos_token}
    return sorted(specials[t] for t in texts if t in specials)
