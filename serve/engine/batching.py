"""Continuous-batching generation engine for a Hugging Face causal LM.

One background thread owns the model. Between decode steps it admits waiting requests (up to
``max_batch_size``), prefills each new prompt on its own, and splices that prompt's KV cache into
the running batch: every layer's keys/values are left-padded to a common length and an attention
mask marks the padding, so one forward pass decodes a token for every active sequence. A
sequence that finishes or is cancelled is dropped from the batch before the next step and
padding columns nobody needs any more are trimmed. Each sequence keeps its own position ids,
penalties, seeded ``torch.Generator``, detokenizer and stop-string state, so its output does not
depend on which other requests shared its batch (tested: batched greedy == unbatched greedy).

The model is injected, so tests can drive the engine with a tiny model; :meth:`generate` adapts
the thread's callbacks to an async iterator for the HTTP layer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import torch

from serve.engine.base import EngineFinishReason, EngineOutput
from serve.engine.decoding import IncrementalDetokenizer, StopStrings, apply_penalties, sample_token
from serve.errors import ContextLengthError
from serve.schemas import SamplingParams

log = logging.getLogger(__name__)


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
        self.generator = (
            torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        )
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

    def choose(self, logits: torch.Tensor) -> int:
        if self.plain_greedy:
            return int(logits.argmax())
        logits = apply_penalties(logits.clone(), self.params, self.prompt_ids, self.output_ids)
        return sample_token(logits, self.params, self.generator)

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


class GenerationEngine:
    """Batched generation over an injected ``model`` (HF causal LM API) and ``tokenizer``.

    Satisfies :class:`~serve.engine.base.Engine`. ``batch_sizes`` counts decode steps by how many
    sequences they decoded together, ``aborted`` the sequences cancelled before finishing.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        context_length: int,
        stop_token_ids: list[int] | tuple[int, ...] = (),
        max_batch_size: int = 32,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.stop_token_ids = set(stop_token_ids)
        self.max_batch_size = max_batch_size
        self.device = next(model.parameters()).device
        self._waiting: deque[Sequence] = deque()
        self._wake = threading.Condition()
        self._batch: list[Sequence] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [batch, cached length], 0 = padding
        self._stopping = False
        self._aborted = 0
        self.batch_sizes: Counter[int] = Counter()  # decode steps run with this many sequences
        self._thread = threading.Thread(target=self._run, name="generation-engine", daemon=True)

    # ------------------------------------------------------------------ public API

    def start(self) -> GenerationEngine:
        self._thread.start()
        return self

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    @property
    def running(self) -> int:
        return len(self._batch)

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
        """Stop generating ``seq``; its slot is freed before the next decode step."""
        seq.cancelled = True
        with self._wake:
            self._wake.notify()

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[EngineOutput]:
        """Outputs of one request as an async iterator; closing it early cancels the request.

        Outputs that queued up while the consumer was busy are merged into one, so a slow
        HTTP stream costs fewer, larger chunks instead of falling behind the engine."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[EngineOutput] = asyncio.Queue()

        def sink(out: EngineOutput) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, out)

        seq = self.submit(prompt_ids, params, sink)
        try:
            while True:
                out = await queue.get()
                while not out.finish_reason and not queue.empty():  # coalesce under load
                    later = queue.get_nowait()
                    later.text = out.text + later.text
                    out = later
                yield out
                if out.finish_reason:
                    return
        finally:
            if not seq.finished:
                self.cancel(seq)

    # ------------------------------------------------------------------ engine thread

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._wake:
                while not self._stopping and not self._batch and not self._waiting:
                    self._wake.wait()
                if self._stopping:
                    break
                admitted = self._take_waiting()
            try:
                with torch.inference_mode():
                    for seq in admitted:
                        self._prefill(seq)
                    self._drop_finished()
                    if self._batch:
                        self._decode_step()
                        self._drop_finished()
            except Exception as exc:  # a model failure must not kill the worker silently
                log.exception("generation step failed; failing %d sequences", len(self._batch))
                for seq in [*self._batch, *admitted]:
                    if not seq.finished:
                        seq.emit("", "error", error=f"generation failed: {exc}")
                self._batch, self._cache, self._mask = [], None, None
        for seq in [*self._batch, *self._waiting]:
            self._abort(seq)

    def _abort(self, seq: Sequence) -> None:
        self._aborted += 1
        seq.emit("", "abort")

    def _take_waiting(self) -> list[Sequence]:
        admitted = []
        while self._waiting and len(self._batch) + len(admitted) < self.max_batch_size:
            seq = self._waiting.popleft()
            if seq.cancelled:
                self._abort(seq)
            else:
                admitted.append(seq)
        return admitted

    def _prefill(self, seq: Sequence) -> None:
        from transformers import DynamicCache

        cache = DynamicCache()
        ids = torch.tensor([seq.prompt_ids], device=self.device)
        out = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        seq.num_cached = len(seq.prompt_ids)
        self._join(seq, cache)
        seq.accept(seq.choose(out.logits[0, -1].float()))

    def _join(self, seq: Sequence, cache: Any) -> None:
        """Append a prefilled sequence's cache to the batch cache, left-padding the shorter."""
        new_len = len(seq.prompt_ids)
        new_mask = torch.ones(1, new_len, dtype=torch.long, device=self.device)
        if self._cache is None:
            self._cache, self._mask, self._batch = cache, new_mask, [seq]
            return
        old_len = self._mask.shape[1]
        total = max(old_len, new_len)
        for old_layer, new_layer in zip(self._cache.layers, cache.layers, strict=True):
            for name in ("keys", "values"):
                merged = torch.cat(
                    [
                        _left_pad(getattr(old_layer, name), total),
                        _left_pad(getattr(new_layer, name), total),
                    ]
                )
                setattr(old_layer, name, merged)
        self._mask = torch.cat([_left_pad(self._mask, total), _left_pad(new_mask, total)])
        self._batch.append(seq)

    def _decode_step(self) -> None:
        batch = self._batch
        self.batch_sizes[len(batch)] += 1
        ids = torch.tensor([[s.output_ids[-1]] for s in batch], device=self.device)
        positions = torch.tensor([[s.num_cached] for s in batch], device=self.device)
        mask = torch.cat([self._mask, self._mask.new_ones(len(batch), 1)], dim=1)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self._cache,
            use_cache=True,
        )
        self._mask = mask
        logits = out.logits[:, -1].float()
        greedy = logits.argmax(-1).tolist() if all(s.plain_greedy for s in batch) else None
        for row, seq in enumerate(batch):
            seq.num_cached += 1
            if seq.cancelled:
                continue
            seq.accept(greedy[row] if greedy is not None else seq.choose(logits[row]))

    def _drop_finished(self) -> None:
        """Remove finished/cancelled rows from the batch cache and trim shared left padding."""
        for seq in self._batch:
            if seq.cancelled and not seq.finished:
                self._abort(seq)
        keep = [i for i, s in enumerate(self._batch) if not s.finished]
        if len(keep) == len(self._batch):
            return
        if not keep:
            self._batch, self._cache, self._mask = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        mask = self._mask.index_select(0, index)
        lead = int(mask.any(dim=0).int().argmax())  # first column some sequence still uses
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, lead:]
            layer.values = layer.values.index_select(0, index)[:, :, lead:]
        self._mask = mask[:, lead:]
        self._batch = [self._batch[i] for i in keep]


def _left_pad(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad dimension -2 (KV caches, [b, h, t, d]) or -1 (masks, [b, t]) on the left."""
    dim = -1 if tensor.dim() == 2 else -2
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
