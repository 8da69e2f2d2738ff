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

from serve.engine.kv_cache import new_cache
from serve.engine.queueing import QueuedEngine, Sequence
from serve.engine.sampling import choose_tokens

log = logging.getLogger(__name__)

PREFILL_TOKENS = 512  # padded prompt tokens per prefill pass: the first group answers sooner


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
                    self._prefill_all(admitted)
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

    def _prefill_all(self, admitted: list[Sequence]) -> None:
        """Prefill admitted prompts in groups of about ``PREFILL_TOKENS`` padded tokens."""
        group: list[Sequence] = []
        for seq in sorted(admitted, key=lambda s: len(s.prompt_ids)):
            longest = len(seq.prompt_ids)  # sorted: the newcomer is the longest so far
            if group and (len(group) + 1) * longest > PREFILL_TOKENS:
                self._prefill(group)
                group = []
            group.append(seq)
        if group:
            self._prefill(group)

    def _prefill(self, group: list[Sequence]) -> None:
        """One forward pass over left-padded prompts: their caches join the batch, and each
        sequence gets its first token. One prompt at a time would read every weight once per
        prompt (measured: 1.6x the CPU time for 32 prompts of 50-73 tokens)."""
        length = max(len(seq.prompt_ids) for seq in group)
        ids = torch.zeros(len(group), length, dtype=torch.long)
        mask = torch.zeros(len(group), length, dtype=torch.long)
        for row, seq in enumerate(group):
            ids[row, length - len(seq.prompt_ids) :] = torch.tensor(seq.prompt_ids)
            mask[row, length - len(seq.prompt_ids) :] = 1
            seq.num_cached = len(seq.prompt_ids)
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = new_cache()
        out = self.model(
            input_ids=ids,
            attention_mask=mask if len(group) > 1 else None,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self._join(group, cache, mask)
        logits = out.logits[:, -1].float()
        for row, token in enumerate(choose_tokens(group, logits)):
            group[row].accept(token)

    def _join(self, group: list[Sequence], cache: Any, mask: torch.Tensor) -> None:
        """Append prefilled rows to the batch cache, left-padding the shorter side."""
        padding = mask == 0
        for layer in cache.layers:
            layer.zero_padding(padding)
        if self._cache is None:
            self._cache, self._mask, self._batch = cache, mask, list(group)
            return
        total = max(self._mask.shape[1], mask.shape[1])
        for old_layer, new_layer in zip(self._cache.layers, cache.layers, strict=True):
            old_layer.append_rows(new_layer)
        self._mask = torch.cat([_left_pad(self._mask, total), _left_pad(mask, total)])
        self._batch.extend(group)

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
        tokens = choose_tokens(batch, out.logits[:, -1].float())
        for seq, token in zip(batch, tokens, strict=True):
            seq.num_cached += 1
            if not seq.cancelled:
                seq.accept(token)

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
            layer.keep_rows(index, lead)
        self._mask = mask[:, lead:]
        self._batch = [self._batch[i] for i in keep]


def _left_pad(mask: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad an attention mask (``[b, t]``) on the left to ``length`` columns."""
    missing = length - mask.shape[1]
    if missing <= 0:
        return mask
    return torch.cat([mask.new_zeros(mask.shape[0], missing), mask], dim=1)
