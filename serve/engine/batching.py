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

import logging
from collections import Counter
from typing import Any

import torch

from serve.engine.queueing import QueuedEngine, Sequence

log = logging.getLogger(__name__)


class GenerationEngine(QueuedEngine):
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
        super().__init__(
            tokenizer,
            context_length=context_length,
            stop_token_ids=stop_token_ids,
            thread_name="generation-engine",
        )
        self.model = model
        self.max_batch_size = max_batch_size
        self.device = next(model.parameters()).device
        self._batch: list[Sequence] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [batch, cached length], 0 = padding
        self.batch_sizes: Counter[int] = Counter()  # decode steps run with this many sequences

    @property
    def running(self) -> int:
        return len(self._batch)

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
