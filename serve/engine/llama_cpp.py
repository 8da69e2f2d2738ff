"""Serve a GGUF file with llama.cpp (``--backend llama-cpp``): :class:`LlamaCppEngine`.

One background thread owns the ``llama_cpp.Llama`` (it is not thread-safe) and runs the queued
sequences one at a time, first come first served, so the worker reports a capacity of 1.
llama.cpp samples each token (``Llama.generate``); everything after the sampled id - stop ids,
incremental detokenizing, stop strings, the length limit, usage counts - is the torch engine's
:class:`~serve.engine.queueing.Sequence`, so both backends answer a request the same way.
Closing a request's iterator stops decoding before the next token. ``Llama.generate`` keeps the
KV cache of the previous request and only evaluates the new prompt's tokens after the longest
common prefix, so a multi-turn chat re-reads just its last turn.

Sampling differs from the torch backend in one documented way: the repetition, presence and
frequency penalties count the generated tokens only (llama.cpp's sampler never sees the prompt).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastchat_lite.errors import FastChatLiteError
from serve.engine.gguf_tokenizer import GgufTokenizer, import_llama_cpp
from serve.engine.queueing import QueuedEngine, Sequence
from serve.schemas import SamplingParams

log = logging.getLogger(__name__)

AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8")
REPACK_CHOICES = ("auto", "on", "off")
_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp draws a fresh seed


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has Intel AMX (a flag in ``/proc/cpuinfo``; False where unreadable)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = {
        flag
        for line in cpuinfo.splitlines()
        if line.startswith("flags")
        for flag in line.partition(":")[2].split()
    }
    return any(flag in flags for flag in AMX_FLAGS)


def repack_weights(mode: str, cpuinfo: str | None = None) -> bool:
    """``--repack``: llama.cpp's weight repacking, off under ``auto`` on AMX CPUs, where every
    quantized GGUF crashes on its first forward pass with it on (measured, llama.cpp 0.3.36)."""
    if mode not in REPACK_CHOICES:
        raise FastChatLiteError(f"--repack {mode!r} is not one of {', '.join(REPACK_CHOICES)}")
    return mode == "on" or (mode == "auto" and not cpu_has_amx(cpuinfo))


@contextlib.contextmanager
def _model_params(**fields: Any) -> Iterator[None]:
    """Set ``llama_model_params`` fields that ``Llama()`` has no argument for.

    ``Llama.__init__`` starts from ``llama_model_default_params()`` and exposes no
    ``use_extra_bufts``, so that function is wrapped while the model loads."""
    module = import_llama_cpp().llama_cpp
    default = module.llama_model_default_params
    known = {name for name, _ in module.llama_model_params._fields_}
    if unknown := set(fields) - known:
        raise FastChatLiteError(
            f"this llama-cpp-python has no model parameter {', '.join(sorted(unknown))}; "
            "install the version fastchat-lite pins (pip install 'fastchat-lite[llamacpp]')"
        )

    def patched() -> Any:
        params = default()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    module.llama_model_default_params = patched
    try:
        yield
    finally:
        module.llama_model_default_params = default


def load_llama(path: str, *, context_length: int | None, threads: int, repack: bool) -> Any:
    """A ``llama_cpp.Llama`` for a GGUF file on the CPU; ``context_length=None`` uses the
    GGUF's own (``llama.context_length``)."""
    llama_cpp = import_llama_cpp()
    with _model_params(use_extra_bufts=repack):
        llama = llama_cpp.Llama(
            path,
            n_ctx=context_length or 0,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=0,
            verbose=False,
        )
    # Penalties look back over the whole reply, as the torch backend's do (default: 64 tokens).
    llama.last_n_tokens_size = llama.n_ctx()
    return llama


def served_context(llama: Any, requested: int | None) -> int:
    """``--context-length``, else the GGUF's training context; llama.cpp rounds its KV cache up
    (to a multiple of 256), so that size is only an upper bound."""
    return min(llama.n_ctx(), requested or llama._model.n_ctx_train())


def sampler_args(params: SamplingParams) -> dict[str, Any]:
    """``Llama.generate`` keyword arguments for our sampling parameters: temperature 0 is
    greedy, ``top_k`` <= 0 is off, and llama.cpp's own extras (min-p, typical) are off."""
    return {
        "temp": 0.0 if params.greedy else params.temperature,
        "top_k": max(params.top_k, 0),
        "top_p": params.top_p,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_penalty": params.repetition_penalty,
        "frequency_penalty": params.frequency_penalty,
        "presence_penalty": params.presence_penalty,
    }


def llama_seed(seed: int | None) -> int:
    """A request's seed as llama.cpp's 32-bit one (never the value that means "random")."""
    return _RANDOM_SEED if seed is None else seed % _RANDOM_SEED


class LlamaCppEngine(QueuedEngine):
    """Satisfies :class:`~serve.engine.base.Engine` over an injected ``llama_cpp.Llama``:
    :class:`QueuedEngine`'s queue, with a thread that decodes one sequence at a time."""

    max_batch_size = 1

    def __init__(
        self,
        llama: Any,
        tokenizer: GgufTokenizer,
        *,
        context_length: int,
        stop_token_ids: list[int] | tuple[int, ...] = (),
    ) -> None:
        super().__init__(
            tokenizer,
            context_length=context_length,
            stop_token_ids=stop_token_ids,
            thread_name="llama-cpp-engine",
        )
        self.llama = llama
        self._current: Sequence | None = None

    def close(self) -> None:
        super().close()
        if not self._thread.is_alive():  # never free the model under a running decode
            self.llama.close()

    @property
    def running(self) -> int:
        current = self._current  # finished: its last output is already on its way
        return int(current is not None and not current.finished)

    # ------------------------------------------------------------------ engine thread

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._waiting:
                    self._wake.wait()
                if self._stopping:
                    break
                seq = self._current = self._waiting.popleft()
            try:
                self._decode(seq)
            except Exception as exc:  # a model failure must not kill the worker silently
                log.exception("llama.cpp generation failed")
                self.llama.reset()  # its KV cache may be half written: before anyone hears back
                if not seq.finished:
                    seq.emit("", "error", error=f"generation failed: {exc}")
            finally:
                self._current = None
        with self._wake:
            left, self._waiting = list(self._waiting), deque()
        for seq in left:
            self._abort(seq)

    def _abort(self, seq: Sequence) -> None:
        self._aborted += 1
        seq.emit("", "abort")

    def _decode(self, seq: Sequence) -> None:
        if seq.cancelled:
            self._abort(seq)
            return
        self.llama.set_seed(llama_seed(seq.params.seed))
        tokens = self.llama.generate(seq.prompt_ids, reset=True, **sampler_args(seq.params))
        try:
            for token in tokens:
                seq.accept(int(token))
                if seq.finished:
                    return
                if seq.cancelled or self._stopping:  # checked before the next token's decode
                    self._abort(seq)
                    return
        finally:
            tokens.close()
        raise RuntimeError("llama.cpp stopped generating before the reply ended")
