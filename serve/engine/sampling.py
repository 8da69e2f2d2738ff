"""Choosing the next token from logits, for the torch engine: penalties, temperature, top-k,
top-p and seeded sampling, and the batched argmax when every row is plain greedy.

llama.cpp samples for itself, so only :mod:`serve.engine.batching` imports this (and torch).
"""

from __future__ import annotations

import torch

from serve.engine.queueing import Sequence
from serve.schemas import SamplingParams


def apply_penalties(
    logits: torch.Tensor, params: SamplingParams, prompt_ids: list[int], output_ids: list[int]
) -> torch.Tensor:
    """Repetition (HF, multiplicative over prompt+output), presence and frequency (OpenAI,
    additive over the output) penalties on one row of logits."""
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(prompt_ids) | set(output_ids)), dtype=torch.long)
        picked = logits[seen]
        logits[seen] = torch.where(
            picked > 0, picked / params.repetition_penalty, picked * params.repetition_penalty
        )
    if output_ids and (params.presence_penalty or params.frequency_penalty):
        counts = torch.bincount(torch.tensor(output_ids), minlength=logits.shape[-1])
        counts = counts[: logits.shape[-1]].to(logits.dtype)
        logits -= params.frequency_penalty * counts + params.presence_penalty * (counts > 0)
    return logits


def sample_token(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> int:
    """Greedy when temperature is 0, else temperature -> top-k -> top-p -> multinomial."""
    if params.greedy:
        return int(logits.argmax())
    logits = logits / params.temperature
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        drop = cumulative - sorted_probs > params.top_p  # keep the token that crosses top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def choose_tokens(batch: list[Sequence], logits: torch.Tensor) -> list[int]:
    """Next token of each row: one batched argmax (one host sync) when every row is plain
    greedy, else each sequence's own penalties and sampler."""
    if all(seq.plain_greedy for seq in batch):
        return logits.argmax(-1).tolist()
    return [_choose(seq, row) for seq, row in zip(batch, logits, strict=True)]


def _choose(seq: Sequence, logits: torch.Tensor) -> int:
    if seq.plain_greedy:
        return int(logits.argmax())
    if seq.generator is None and seq.params.seed is not None:
        seq.generator = torch.Generator().manual_seed(seq.params.seed)  # before its first draw
    logits = apply_penalties(logits.clone(), seq.params, seq.prompt_ids, seq.output_ids)
    return sample_token(logits, seq.params, seq.generator)
