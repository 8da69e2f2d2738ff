"""What a worker needs from an engine: :class:`Engine`, and the :class:`EngineOutput` it streams.

Three engines satisfy it: :class:`~serve.engine.batching.GenerationEngine` (Hugging Face model,
our continuous batching), :class:`~serve.engine.llama_cpp.LlamaCppEngine` (a GGUF file, one
sequence at a time) and :class:`~serve.engine.backends.VllmEngine` (GPU, vLLM's batching).
:class:`TextEngine` is the same contract for an engine that templates and tokenizes the request
itself: :class:`~serve.engine.upstream.UpstreamEngine`, another OpenAI-compatible server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from serve.schemas import ChatMessage, SamplingParams, WorkerFinishReason

# "error": the engine failed the sequence; ``EngineOutput.error`` says why.
EngineFinishReason = Literal[WorkerFinishReason, "error"]


@dataclass
class EngineOutput:
    """What one step produced for one sequence; the last output has ``finish_reason`` set."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: EngineFinishReason | None = None
    error: str | None = None


class Engine(Protocol):
    """Generates sequences for prompt token ids, batching concurrent requests."""

    context_length: int
    max_batch_size: int

    @property
    def running(self) -> int:
        """Sequences being decoded now."""
        ...

    @property
    def waiting(self) -> int:
        """Sequences queued for a batch slot."""
        ...

    @property
    def aborted(self) -> int:
        """Sequences cancelled before they finished (caller gone, shutdown), since start."""
        ...

    def max_new_tokens(self, prompt_len: int, requested: int | None) -> int:
        """Tokens a prompt may generate; raises ``ContextLengthError`` when it cannot fit."""
        ...

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, *, interval: float | None = None
    ) -> AsyncIterator[EngineOutput]:
        """Outputs of one sequence; closing the iterator early cancels it. ``interval``: the
        fewest seconds between outputs the caller needs (the first and last aside); None: the
        engine's streaming default."""
        ...

    def close(self) -> None:
        """Stop generating and release the model."""
        ...


class TextEngine(Protocol):
    """Generates from a request's text (chat messages or a raw prompt), templating and
    tokenizing it itself; the queue counters mean what they mean on :class:`Engine`."""

    context_length: int
    max_batch_size: int

    @property
    def running(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    @property
    def aborted(self) -> int: ...

    def generate_text(
        self, source: str | list[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[EngineOutput]:
        """Outputs of one sequence. A request the engine refuses raises ``ServeError`` (with the
        status to answer) before the first output; closing the iterator early cancels it."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
