"""Build a worker's engine from ``--model``: the batching HF engine, vLLM on a GPU, or llama.cpp.

All three satisfy :class:`~serve.engine.base.Engine`; the worker (:mod:`serve.cluster.worker`)
wraps the engine and its :class:`~serve.engine.prompting.PromptBuilder` in a service. The HF and
vLLM backends serve a model directory, ``--backend llama-cpp`` one GGUF file
(:mod:`serve.engine.llama_cpp`); :func:`check_model_source` says which, before anything loads.
Torch is imported only by the functions that need it, so ``serve local`` can check its flags
without it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastchat_lite.errors import FastChatLiteError, MissingExtraError
from fastchat_lite.jinja_export import template_for_tokenizer
from fastchat_lite.model_loading import check_model_dir, load_model, load_tokenizer
from serve.config import WorkerConfig
from serve.engine.base import Engine, EngineOutput
from serve.engine.prompting import PromptBuilder
from serve.schemas import WORKER_FINISH_REASONS, SamplingParams

GGUF_MAGIC = b"GGUF"


def default_threads(requested: int | None) -> int:
    """``--threads``, else one per two cores: spinning threads that compete with the HTTP event
    loop cost far more than they gain on small models (measured: 5x on 2 cores)."""
    return requested or max(1, (os.cpu_count() or 2) // 2)


def is_gguf(path: str | Path) -> bool:
    """Whether ``path`` is a file that starts with the GGUF magic bytes."""
    try:
        with open(path, "rb") as file:
            return file.read(4) == GGUF_MAGIC
    except OSError:
        return False


def check_model_source(config: WorkerConfig) -> Path:
    """``--model`` checked against ``--backend`` (a GGUF file for llama-cpp, a model directory
    otherwise) and the options that only apply to one of them; raises
    :class:`FastChatLiteError` naming the fix."""
    path = Path(config.model)
    if config.backend != "llama-cpp":
        if path.is_file() and (path.suffix.lower() == ".gguf" or is_gguf(path)):
            raise FastChatLiteError(
                f"{path} is a GGUF file: serve it with --backend llama-cpp "
                f"(--backend {config.backend} serves a Hugging Face model directory)"
            )
        return check_model_dir(path)
    if path.is_dir():
        raise FastChatLiteError(
            f"{path} is a directory; --backend llama-cpp serves one .gguf file "
            "(a Hugging Face model directory is served with --backend hf)"
        )
    if not path.is_file():
        raise FastChatLiteError(f"{path} does not exist; --backend llama-cpp needs a .gguf file")
    if not is_gguf(path):
        raise FastChatLiteError(
            f"{path} is not a GGUF file (it does not start with the GGUF magic bytes); "
            "--backend llama-cpp needs a .gguf file"
        )
    if config.device != "cpu":
        raise FastChatLiteError(
            f"--device {config.device} is not supported with --backend llama-cpp, which runs "
            "the GGUF on the CPU; serve the Hugging Face model with --backend hf or vllm on a GPU"
        )
    if config.dtype != "auto":
        raise FastChatLiteError(
            f"--dtype {config.dtype} does not apply to a GGUF file, whose tensor types were "
            "chosen when it was exported; leave --dtype out"
        )
    return path


def load_engine(config: WorkerConfig) -> tuple[Engine, PromptBuilder]:
    """Check ``--model``, load tokenizer + model, pick the template, start the engine."""
    check_model_source(config)
    if config.backend == "llama-cpp":
        return _load_llama_cpp(config)
    import torch

    from serve.engine.batching import GenerationEngine

    torch.set_num_threads(default_threads(config.threads))
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


def _load_llama_cpp(config: WorkerConfig) -> tuple[Engine, PromptBuilder]:
    from serve.engine.gguf_tokenizer import GgufTokenizer, import_llama_cpp

    import_llama_cpp()  # a missing extra is reported before torch and the model load
    from serve.engine.llama_cpp import LlamaCppEngine, load_llama, repack_weights, served_context

    llama = load_llama(
        config.model,
        context_length=config.context_length,
        threads=default_threads(config.threads),
        repack=repack_weights(config.repack),
    )
    tokenizer = GgufTokenizer.from_llama(llama)
    prompts = PromptBuilder(tokenizer, template_for_tokenizer(tokenizer, config.template))
    context = served_context(llama, config.context_length)
    engine = LlamaCppEngine(
        llama, tokenizer, context_length=context, stop_token_ids=prompts.stop_ids
    )
    return engine.start(), prompts


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
        from serve.engine.queueing import QueuedEngine

        return QueuedEngine.max_new_tokens(self, prompt_len, requested)  # type: ignore[arg-type]

    def close(self) -> None:
        # vLLM renamed this across versions (V0 AsyncLLMEngine vs V1 AsyncLLM).
        for name in ("shutdown", "shutdown_background_loop"):
            if callable(stop := getattr(self.engine, name, None)):
                stop()
                return

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, *, interval: float | None = None
    ) -> AsyncIterator[EngineOutput]:
        """``interval`` is not used: vLLM's output processor paces its own outputs."""
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
