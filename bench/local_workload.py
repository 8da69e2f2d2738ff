"""The model and the client workload of ``bench/local_bench.py``.

The model is a random-init Llama built here (no downloads): a byte-level BPE tokenizer trained on
the bundled conversations, the weights saved with ``save_pretrained`` and exported to GGUF at
f16, q8_0 and q4_K_M, all cached in the work dir so a re-run starts serving at once. Its special
tokens' embedding rows are zeroed: with tied embeddings their logits are then 0 while the best
of thousands of random logits is positive, so greedy decoding never ends a reply early and every
server generates exactly ``max_tokens`` (the same work, whether or not it supports
``ignore_eos``).

The client streams OpenAI chat completions with httpx and times each request: TTFT is the
first chunk carrying text, decode tokens/s is (tokens - 1) / (total - TTFT), the tokens after
the first over the time they took. Resident memory is sampled from outside: the peak RSS of a
server's process tree and of the process in it that holds the weights.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

MODEL_NAME = "bench"  # what every server is told to call the model
FILE_TYPES = ("f16", "q8_0", "q4_K_M")
DATA_DIR = Path(__file__).resolve().parents[1] / "fastchat_lite" / "data"
PROMPTS = [
    "Explain how a tiny language model answers questions.",
    "Write a short story about a lighthouse keeper and a storm.",
    "List five ways to make a slow program faster, with one example each.",
    "What is the difference between a process and a thread?",
]


@dataclass(frozen=True)
class ModelShape:
    """A Llama's size; every width is a multiple of 256 so k-quants apply to every tensor."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    context_length: int = 2048


FULL = ModelShape("llama-100m", 16384, 768, 2048, 12, 12)
SMALL = ModelShape("llama-small", 4096, 256, 768, 4, 4)


def corpus_texts() -> Iterator[str]:
    """Every string in the bundled conversation files (the tokenizer's training text)."""

    def strings(node: Any) -> Iterator[str]:
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for item in node:
                yield from strings(item)

    for path in sorted(DATA_DIR.glob("*.json")):
        yield from strings(json.loads(path.read_text(encoding="utf-8")))


def generated_texts(lines: int = 20000, seed: int = 0) -> Iterator[str]:
    """Sentences of made-up words drawn Zipf-like from a fixed lexicon: the bundled text alone
    yields ~5K BPE merges, these give the tokenizer enough distinct words for a 16K vocab."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "st", "ng"]
    lexicon = [
        "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(40000)
    ]
    weights = [1 / rank for rank in range(1, len(lexicon) + 1)]
    for _ in range(lines):
        yield " ".join(rng.choices(lexicon, weights, k=12))


def build_model(workdir: Path, shape: ModelShape) -> Path:
    """The HF model dir of ``shape`` under ``workdir``, built unless a complete one is there."""
    import torch

    from fastchat_lite.tiny import TinyModelConfig, init_llama, train_tokenizer

    out = workdir / shape.name
    if (out / ".complete").exists():
        return out
    config = TinyModelConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_attention_heads,
        max_position_embeddings=shape.context_length,
    )
    tokenizer = train_tokenizer(
        corpus_texts(), config.vocab_size, config.template, extra_texts=generated_texts()
    )
    model = init_llama(tokenizer, config)
    with torch.no_grad():  # see the module docstring: no reply ends early
        model.get_input_embeddings().weight[tokenizer.all_special_ids] = 0.0
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / ".complete").touch()
    return out


def export_ggufs(model_dir: Path, workdir: Path) -> dict[str, Path]:
    """File type -> GGUF of ``model_dir`` (f16, q8_0, q4_K_M from the f16), cached."""
    from fastchat_lite.gguf import export_gguf

    paths = {}
    for kind in FILE_TYPES:
        path = workdir / f"{model_dir.name}-{kind}.gguf"
        if not path.exists():  # export_gguf writes atomically: a file there is complete
            quantize = kind if kind == "q4_K_M" else None
            export_gguf(model_dir, path, dtype="f16" if quantize else kind, quantize=quantize)
        paths[kind] = path
    return paths


def file_size(path: Path) -> int:
    """Bytes of a GGUF file, or of the ``*.safetensors`` weights of a model dir."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.glob("*.safetensors"))
    return path.stat().st_size


@dataclass
class RequestResult:
    """One streamed chat completion, timed from the client's side."""

    latency: float
    ttft: float
    tokens: int
    finish_reason: str | None
    prompt_tokens: int | None
    text: str

    @property
    def decode_tok_s(self) -> float:
        return (self.tokens - 1) / max(self.latency - self.ttft, 1e-9)


def _tokens_of(usage: dict, finish: str | None, chunks: int, max_tokens: int) -> int:
    """Completion tokens: the server's usage, else ``max_tokens`` when it stopped on the length
    limit, else the text chunks (llama_cpp.server streams no usage; one chunk per token)."""
    if usage.get("completion_tokens"):
        return int(usage["completion_tokens"])
    return max_tokens if finish == "length" else chunks


async def stream_chat(
    http: httpx.AsyncClient, base: str, prompt: str, max_tokens: int, extra: dict[str, Any]
) -> RequestResult:
    """Send one greedy streaming chat request to ``base`` (.../v1) and time it."""
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    started = time.perf_counter()
    ttft, chunks, parts, usage, finish = None, 0, [], {}, None
    async with http.stream("POST", f"{base}/chat/completions", json=body) as response:
        if response.status_code != 200:
            detail = (await response.aread()).decode(errors="replace")[:300]
            raise RuntimeError(f"{base}: HTTP {response.status_code}: {detail}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                finish = choice.get("finish_reason") or finish
                if content := choice.get("delta", {}).get("content"):
                    ttft = ttft or time.perf_counter() - started
                    chunks += 1
                    parts.append(content)
    latency = time.perf_counter() - started
    return RequestResult(
        latency=latency,
        ttft=latency if ttft is None else ttft,
        tokens=_tokens_of(usage, finish, chunks, max_tokens),
        finish_reason=finish,
        prompt_tokens=usage.get("prompt_tokens"),
        text="".join(parts),
    )


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=600, trust_env=False, limits=httpx.Limits(max_connections=64))


async def check_request(base: str, max_tokens: int, extra: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming request (usage from every server): prompt tokens and the greedy text,
    to check that all contenders got the same prompt and, per file, the same answer."""
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": PROMPTS[0]}],
        "temperature": 0,
        "max_tokens": max_tokens,
        **extra,
    }
    async with _client() as http:
        response = await http.post(f"{base}/chat/completions", json=body)
    response.raise_for_status()
    data = response.json()
    choice = data["choices"][0]
    return {
        "prompt_tokens": data["usage"]["prompt_tokens"],
        "completion_tokens": data["usage"]["completion_tokens"],
        "finish_reason": choice["finish_reason"],
        "text": choice["message"]["content"],
    }


async def single_stream(
    base: str, requests: int, max_tokens: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """``requests`` chat requests one after another: medians of TTFT and decode tokens/s."""
    results = []
    async with _client() as http:
        for i in range(requests):
            prompt = PROMPTS[i % len(PROMPTS)]
            results.append(await stream_chat(http, base, prompt, max_tokens, extra))
    return {
        "decode_tok_s": statistics.median(r.decode_tok_s for r in results),
        "e2e_tok_s": sum(r.tokens for r in results) / sum(r.latency for r in results),
        "ttft_s": statistics.median(r.ttft for r in results),
        "mean_tokens": statistics.mean(r.tokens for r in results),
        "requests": [_summary(r) for r in results],
    }


async def concurrent_streams(
    base: str, streams: int, per_stream: int, max_tokens: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """``streams`` clients sending ``per_stream`` requests each: aggregate tokens/s and the
    median TTFT (which includes queueing on servers that decode one request at a time)."""
    results: list[RequestResult] = []
    async with _client() as http:

        async def client(index: int) -> None:
            for i in range(per_stream):
                prompt = PROMPTS[(index + i) % len(PROMPTS)]
                results.append(await stream_chat(http, base, prompt, max_tokens, extra))

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(streams)))
        elapsed = time.perf_counter() - started
    return {
        "aggregate_tok_s": sum(r.tokens for r in results) / elapsed,
        "ttft_s": statistics.median(r.ttft for r in results),
        "mean_tokens": statistics.mean(r.tokens for r in results),
        "requests": [_summary(r) for r in results],
    }


def _summary(result: RequestResult) -> dict[str, Any]:
    row = asdict(result)
    row.pop("text")
    return row


class RssSampler:
    """Peak resident memory of a process tree, sampled on a thread until :meth:`stop`."""

    def __init__(self, pid: int, is_model_process: Callable[[psutil.Process], bool]) -> None:
        self.root = psutil.Process(pid)
        self.is_model_process = is_model_process
        self.peak_tree = self.peak_model = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        tree = model = 0
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            try:
                rss = proc.memory_info().rss
                model += rss if self.is_model_process(proc) else 0
            except psutil.Error:  # a child that exited between listing and reading
                continue
            tree += rss
        self.peak_tree = max(self.peak_tree, tree)
        self.peak_model = max(self.peak_model, model)

    def _run(self) -> None:
        while not self._done.wait(0.1):
            self.sample()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
