"""What every in-process engine shares: one request's :class:`Sequence` state, and
:class:`QueuedEngine`, the waiting queue a background thread drains plus the async adapter the
HTTP layer iterates.

The batching HF engine (:mod:`serve.engine.batching`) and the llama.cpp one
(:mod:`serve.engine.llama_cpp`) differ only in how their thread turns queued sequences into
tokens; each sampled token goes through :meth:`Sequence.accept`, so stop ids, stop strings,
detokenizing, the length limit and usage counts are one implementation for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from serve.engine.base import EngineFinishReason, EngineOutput
from serve.engine.decoding import IncrementalDetokenizer, StopStrings
from serve.errors import ContextLengthError
from serve.schemas import SamplingParams


class Sequence:
    """One request's generation state; only the engine thread mutates it (``cancel`` aside)."""

    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        max_new_tokens: int,
        stop_ids: set[int],
        tokenizer: Any,
        sink: Callable[[EngineOutput], None],
    ) -> None:
        self.prompt_ids = prompt_ids
        self.params = params
        self.max_new_tokens = max_new_tokens
        self.stop_ids = set() if params.ignore_eos else stop_ids | set(params.stop_token_ids)
        self.sink = sink
        self.output_ids: list[int] = []
        self.generator: Any = None  # the torch engine's seeded sampler (serve.engine.sampling)
        self.detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids)
        self.stops = StopStrings(params.stop)
        self.cancelled = False
        self.finished = False
        self.num_cached = 0  # real (non-padding) tokens in the KV cache == next position id

    @property
    def plain_greedy(self) -> bool:
        p = self.params
        return (
            p.greedy
            and p.repetition_penalty == 1.0
            and not (p.presence_penalty or p.frequency_penalty)
        )

    def emit(
        self, text: str, finish_reason: EngineFinishReason | None = None, error: str | None = None
    ) -> None:
        if finish_reason:
            self.finished = True
        if text or finish_reason:
            out = EngineOutput(
                text, len(self.prompt_ids), len(self.output_ids), finish_reason, error
            )
            self.sink(out)

    def accept(self, token: int) -> None:
        """Append a sampled token, stream its text, and finish on a stop or the length limit."""
        if token in self.stop_ids:
            self.emit(self.stops.flush(), "stop")
            return
        self.output_ids.append(token)
        text, stopped = self.stops.feed(self.detokenizer.add(token))
        if stopped:
            self.emit(text, "stop")
        elif len(self.output_ids) >= self.max_new_tokens:
            self.emit(text + self.stops.flush(), "length")
        else:
            self.emit(text)


class Mailbox:
    """One request's outputs not yet taken by its consumer, merged as they arrive.

    Guarded by its :class:`Outbox`'s lock. ``wake_on_any``: the consumer is idle and wants the
    next output at once; otherwise only a finishing output wakes it (it comes back on its own
    timer when its stream interval is up)."""

    __slots__ = ("last", "parts", "ready", "signalled", "wake_on_any")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.last: EngineOutput | None = None
        self.wake_on_any = True
        self.signalled = False
        self.ready = asyncio.Event()

    def take(self) -> EngineOutput | None:
        """Everything pending as one output (the latest counts, all the text), or None."""
        out = self.last
        if out is not None:
            out.text = "".join(self.parts)
            self.parts, self.last = [], None
        return out


class Outbox:
    """Outputs the engine thread hands to one event loop's requests.

    A decode step emits one output per sequence. The engine thread merges each into its
    request's :class:`Mailbox` and wakes the loop only for a request that is waiting for output
    or for a finished sequence, once per burst (``call_soon_threadsafe`` writes to the loop's
    self-pipe): every wake costs the engine thread the GIL, and waking 32 consumers per decode
    step to merge one token each cost more than the step on a small model (measured)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._wakes: list[Mailbox] = []
        self._lock = threading.Lock()

    def put(self, box: Mailbox, out: EngineOutput) -> None:
        """Called by the engine thread for each output of the request that owns ``box``."""
        with self._lock:
            box.parts.append(out.text)
            box.last = out
            if box.signalled or not (box.wake_on_any or out.finish_reason):
                return
            box.signalled = True
            self._wakes.append(box)
            wake = len(self._wakes) == 1
        if wake and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            boxes, self._wakes = self._wakes, []
        for box in boxes:
            box.ready.set()

    def take(self, box: Mailbox, *, due: bool) -> EngineOutput | None:
        """What ``box`` holds, if the consumer may send it now (``due``: its interval is up;
        a finishing output is always sent). Arms the wake-up for what it waits for next."""
        with self._lock:
            box.signalled = False
            box.wake_on_any = due
            if box.last is not None and (due or box.last.finish_reason):
                return box.take()
            return None


class QueuedEngine:
    """Queue, cancel and async adapter over a background thread (``_run``, the subclass's).

    Only the thread mutates sequences (``cancel`` aside); ``sink`` callbacks hop back to the
    event loop of the request that submitted them."""

    max_batch_size: int
    stream_interval = 0.025  # seconds between a stream's outputs, first and last aside

    def __init__(
        self,
        tokenizer: Any,
        *,
        context_length: int,
        stop_token_ids: list[int] | tuple[int, ...],
        thread_name: str,
    ) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.stop_token_ids = set(stop_token_ids)
        self._waiting: deque[Sequence] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._aborted = 0
        self._outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Outbox] = (
            weakref.WeakKeyDictionary()
        )
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> QueuedEngine:
        self._thread.start()
        return self

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def aborted(self) -> int:
        return self._aborted

    def max_new_tokens(self, prompt_len: int, requested: int | None) -> int:
        """Tokens this prompt may generate; raises :class:`ContextLengthError` if it cannot fit."""
        room = self.context_length - prompt_len
        if room <= 0:
            raise ContextLengthError(
                f"This model's maximum context length is {self.context_length} tokens, but the "
                f"prompt has {prompt_len} tokens; shorten the messages or the prompt",
                param="messages",
            )
        return room if requested is None else min(requested, room)

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, sink: Callable[[EngineOutput], None]
    ) -> Sequence:
        """Queue a request; ``sink`` is called from the engine thread with each output."""
        if not prompt_ids:
            prompt_ids = [self.tokenizer.bos_token_id or self.tokenizer.eos_token_id or 0]
        max_new = self.max_new_tokens(len(prompt_ids), params.max_tokens)
        seq = Sequence(prompt_ids, params, max_new, self.stop_token_ids, self.tokenizer, sink)
        with self._wake:
            self._waiting.append(seq)
            self._wake.notify()
        return seq

    def cancel(self, seq: Sequence) -> None:
        """Stop generating ``seq``; the thread drops it before its next decode step."""
        seq.cancelled = True
        with self._wake:
            self._wake.notify()

    def _outbox(self) -> Outbox:
        """The running event loop's :class:`Outbox` (one per loop, made on first use)."""
        loop = asyncio.get_running_loop()
        with self._wake:
            outbox = self._outboxes.get(loop)
            if outbox is None:
                outbox = self._outboxes[loop] = Outbox(loop)
        return outbox

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, *, interval: float | None = None
    ) -> AsyncIterator[EngineOutput]:
        """Outputs of one request as an async iterator; closing it early cancels the request.

        The first output is yielded at once; later ones at most every ``interval`` seconds
        (default :attr:`stream_interval`; a caller that wants the whole reply passes a long
        one), merged, and the last one at once. Each output costs an NDJSON line in the worker
        and a parse in the API, so per-token chunks for 32 streams cost more CPU than the
        model's decode step on a small model (measured)."""
        interval = self.stream_interval if interval is None else interval
        loop = asyncio.get_running_loop()
        outbox, box = self._outbox(), Mailbox()
        seq = self.submit(prompt_ids, params, partial(outbox.put, box))
        sent_at = -math.inf
        try:
            while True:
                wait = sent_at + interval - loop.time()
                out = outbox.take(box, due=wait <= 0)
                if out is None:  # wait for output, or (interval not up) for the finish
                    box.ready.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(box.ready.wait(), wait if wait > 0 else None)
                    continue
                yield out
                sent_at = loop.time()
                if out.finish_reason:
                    return
        finally:
            if not seq.finished:
                self.cancel(seq)
