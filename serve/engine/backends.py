"""Build a worker's engine from a model directory: the batching HF engine, or vLLM on a GPU.

Both satisfy :class:`~serve.engine.base.Engine`; the worker (:mod:`serve.cluster.worker`) wraps
the engine and its :class:`~serve.engine.prompting.PromptBuilder` in a service.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from typing import Any

from fastchat_lite.errors import FastChatLiteError, MissingExtraError
from fastchat_lite.jinja_export import template_for_tokenizer
from fastchat_lite.model_loading import check_model_dir, load_model, load_tokenizer
from serve.config import WorkerConfig
from serve.engine.base import Engine, EngineOutput
from serve.engine.batching import GenerationEngine
from serve.engine.prompting import PromptBuilder
from serve.schemas import WORKER_FINISH_REASONS, SamplingParams


def load_engine(config: WorkerConfig) -> tuple[Engine, PromptBuilder]:
    """Load tokenizer + model, pick the template, start the engine."""
    import torch

    check_model_dir(config.model)
    # One intra-op thread per two cores: spinning OpenMP threads that compete with the HTTP
    # event loop cost far more than they gain on small models (measured: 5x on 2 cores).
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 2) // 2))
    if config.device == "cuda" and not torch.cuda.is_available():
        raise FastChatLiteError("--device cuda was given but no CUDA GPU is visible; use cpu")
    tokenizer = load_tokenizer(config.model)
    prompts = PromptBuilder(tokenizer, template_for_tokenizer(tokenizer, config.template))
    if config.backend == "vllm":
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(config.model)
        context = config.context_length or _context_length(model_config, tokenizer)
        engine: Engine = VllmEngine(config, prompts.stop_ids, context)
    else:
        model = load_model(config.model, dtype=config.dtype, device=config.device).eval()
        context = config.context_length or _context_length(model.config, tokenizer)
        engine = GenerationEngine(
            model,
            tokenizer,
            context_length=context,
            stop_token_ids=prompts.stop_ids,
            max_batch_size=config.max_batch_size,
        ).start()
    return engine, prompts


def _context_length(model_config: Any, tokenizer: Any) -> int:
    for key in ("max_position_embeddings", "max_sequence_length", "seq_length", "n_positions"):
        value = getattr(model_config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0)
    return limit if 0 < limit < 1_000_000 else 2048


class VllmEngine:
    """Thin adapter over ``vllm.AsyncLLMEngine`` (GPU only); vLLM does its own batching."""

    def __init__(self, config: WorkerConfig, stop_ids: list[int], context_length: int) -> None:
        import torch

        if importlib.util.find_spec("vllm") is None:
            raise MissingExtraError(
                "--backend vllm needs vLLM: `pip install 'fastchat-lite[vllm]'` on a CUDA machine"
            )
        if not torch.cuda.is_available():
            raise FastChatLiteError("--backend vllm needs a CUDA GPU; use --backend hf on CPU")
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        args = AsyncEngineArgs(
            model=config.model, max_num_seqs=config.max_batch_size, max_model_len=context_length
        )
        self.engine = AsyncLLMEngine.from_engine_args(args)
        self.stop_ids = stop_ids
        self.max_batch_size = config.max_batch_size
        self.context_length = context_length
        self.running = self.waiting = self.aborted = 0

    def max_new_tokens(self, prompt_len: int, requested: int | None) -> int:
        return GenerationEngine.max_new_tokens(self, prompt_len, requested)  # type: ignore[arg-type]

    def close(self) -> None:
        # vLLM renamed this across versions (V0 AsyncLLMEngine vs V1 AsyncLLM).
        for name in ("shutdown", "shutdown_background_loop"):
            if callable(stop := getattr(self.engine, name, None)):
                stop()
                return

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[EngineOutput]:
        from vllm import SamplingParams as VllmParams
        from vllm.utils import random_uuid

        vparams = VllmParams(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            repetition_penalty=params.repetition_penalty,
            max_tokens=self.max_new_tokens(len(prompt_ids), params.max_tokens),
            stop=params.stop or None,
            stop_token_ids=[*self.stop_ids, *params.stop_token_ids],
            seed=params.seed,
            ignore_eos=params.ignore_eos,
        )
        sent, finished, self.running = 0, False, self.running + 1
        try:
            prompt = {"prompt_token_ids": prompt_ids}
            async for result in self.engine.generate(prompt, vparams, random_uuid()):
                out = result.outputs[0]
                finish = out.finish_reason if out.finish_reason in WORKER_FINISH_REASONS else None
                finished = finish is not None
                yield EngineOutput(out.text[sent:], len(prompt_ids), len(out.token_ids), finish)
                sent = len(out.text)
        finally:
            self.running -= 1
            if not finished:
                self.aborted += 1
