"""Per-sequence text pieces: incremental detokenization and stop strings.

Kept apart from the engines so each rule is unit-testable, and free of torch so the llama.cpp
worker does not load it (sampling on logits lives in :mod:`serve.engine.sampling`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

DETOKENIZE_CONTEXT = 5  # prompt tokens decoded with the first output token (leading spaces)


def ids_to_text(tokenizer: Any) -> Callable[[list[int]], str]:
    """``tokenizer.decode(ids, skip_special_tokens=True)``, straight from the Rust tokenizer
    when the HF wrapper would add nothing (no space clean-up): it runs twice per generated
    token per sequence, and the wrapper costs 4x the decoding itself (measured)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", True):
        return partial(backend.decode, skip_special_tokens=True)
    return partial(tokenizer.decode, skip_special_tokens=True)


class IncrementalDetokenizer:
    """Text deltas for a growing list of ids, never emitting half of a multi-byte character.

    Decodes only a short window (the vLLM prefix/read offsets), so each step costs O(1) and a
    sentencepiece leading space is kept by decoding a few prompt tokens as context.
    """

    def __init__(self, tokenizer: Any, prompt_ids: list[int]) -> None:
        self._decode = ids_to_text(tokenizer)
        self.ids = list(prompt_ids[-DETOKENIZE_CONTEXT:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return ""  # an incomplete UTF-8 sequence: wait for the next byte token
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return new_text[len(prefix_text) :]


class StopStrings:
    """Finds stop strings in streamed text and holds back any tail that could start one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.text = ""
        self.sent = 0

    def feed(self, delta: str) -> tuple[str, bool]:
        """(text safe to emit now, whether a stop string ended the reply)."""
        if not self.stops:
            return delta, False
        start = max(0, len(self.text) - max(len(s) for s in self.stops))
        self.text += delta
        hits = [p for p in (self.text.find(s, start) for s in self.stops) if p >= 0]
        if hits:
            end = min(hits)
            out, self.sent = self.text[self.sent : end], max(end, self.sent)
            return out, True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.text)), hold, -1):
                if self.text.endswith(stop[:k]):
                    hold = k
                    break
        end = len(self.text) - hold
        out, self.sent = self.text[self.sent : end], max(end, self.sent)
        return out, False

    def flush(self) -> str:
        """The held-back tail, emitted when the reply ends for another reason."""
        out, self.sent = self.text[self.sent :], len(self.text)
        return out
