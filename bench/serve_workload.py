"""The serving benchmark's workload: one tiny model every stack loads, fixed prompts, the client.

Kept apart from the launchers (``serve_stacks.py``) and the report (``serve_report.py``) so the
same requests, token counting and greedy reference serve every stack alike.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

MODEL_NAME = "toymodel"  # a basename that picks no special FastChat adapter
MAX_TOKENS = 64
PROMPTS = [
    f"Question {i}: " + " ".join(["explain how a tiny model answers questions"] * (1 + i % 4))
    for i in range(16)
]
# Saved by the interpreter it runs in: run with transformers 4.57 (FastChat's venv) the
# directory also loads in vLLM's 5.19 and our 5.2x (a 5.x-saved tokenizer fails in 4.57).
BUILD_SCRIPT = """
import sys, torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
out, corpus, template = sys.argv[1:4]
texts = [l.strip() for l in open(corpus, encoding="utf-8") if l.strip()]
backend = Tokenizer(models.BPE())
backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
backend.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
backend.train_from_iterator(texts, trainer)
backend.post_processor = processors.TemplateProcessing(
    single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))])
tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                              eos_token="</s>", pad_token="<pad>", model_max_length=2048)
tok.chat_template = open(template, encoding="utf-8").read()
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=688,
                  num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
LlamaForCausalLM(cfg).save_pretrained(out)
tok.save_pretrained(out)
"""


def corpus_lines(lines: int = 4000, seed: int = 0) -> list[str]:
    """Tokenizer training text: the template's words, the prompts, and seeded pseudo-words
    (enough distinct words that BPE reaches the full 2,048-token vocabulary)."""
    rng = random.Random(seed)
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(3000)]
    scaffold = [
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions. USER: ASSISTANT:"
    ]
    filler = [" ".join(rng.choices(words, k=12)) for _ in range(lines)]
    return scaffold * 50 + PROMPTS * 20 + filler


def build_model(python: Path, workdir: Path) -> Path:
    """Save the benchmark model into ``workdir/toymodel`` with ``python``'s transformers."""
    from fastchat_lite.jinja_export import chat_template
    from fastchat_lite.templates import DEFAULT_TEMPLATE

    out = workdir / MODEL_NAME
    corpus, template, script = (workdir / n for n in ("corpus.txt", "template.jinja", "build.py"))
    corpus.write_text("\n".join(corpus_lines()) + "\n", encoding="utf-8")
    # vLLM renders chat prompts with the tokenizer's template: give it ours (vicuna_v1.1).
    template.write_text(chat_template(DEFAULT_TEMPLATE), encoding="utf-8")
    script.write_text(BUILD_SCRIPT)
    subprocess.run([str(python), str(script), str(out), str(corpus), str(template)], check=True)
    return out


@dataclass
class Answer:
    """One request as the client saw it; ``error`` set (and the rest empty) when it failed."""

    prompt: int
    latency: float
    ttft: float | None
    text: str
    prompt_tokens: int | None
    usage_tokens: int | None
    error: str | None = None


def request_body(prompt: str, stream: bool) -> dict[str, Any]:
    """The chat request every stack gets; ``ignore_eos`` so every answer has 64 tokens where
    the stack honours it (FastChat ignores the field and stops at EOS)."""
    body: dict[str, Any] = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def ask(http: httpx.AsyncClient, base: str, index: int, stream: bool) -> Answer:
    """Send prompt ``index`` to ``base`` (no ``/v1``); errors become an :class:`Answer` with
    ``error`` set so a failing stack is counted, not fatal."""
    started = time.perf_counter()
    try:
        if stream:
            return await _ask_stream(http, base, index, started)
        response = await http.post(
            f"{base}/v1/chat/completions", json=request_body(PROMPTS[index], False)
        )
        data = response.json()
        usage = data["usage"]
        return Answer(index, time.perf_counter() - started, None,
                      data["choices"][0]["message"]["content"], usage["prompt_tokens"],
                      usage["completion_tokens"])  # fmt: skip
    except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
        return Answer(index, time.perf_counter() - started, None, "", None, None, repr(exc)[:200])


async def _ask_stream(http: httpx.AsyncClient, base: str, index: int, started: float) -> Answer:
    ttft, parts, usage, done = None, [], {}, False
    body = request_body(PROMPTS[index], True)
    async with http.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                done = True
            if not line.startswith("data: ") or done:
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content"):
                    ttft = ttft or time.perf_counter() - started
                    parts.append(choice["delta"]["content"])
    if not done:  # FastChat under pydantic 2 cuts the stream after the headers
        raise httpx.RemoteProtocolError("stream ended without data: [DONE]")
    return Answer(index, time.perf_counter() - started, ttft, "".join(parts),
                  usage.get("prompt_tokens"), usage.get("completion_tokens"))  # fmt: skip


async def load(
    base: str, requests: int, concurrency: int, stream: bool
) -> tuple[list[Answer], float]:
    """``concurrency`` clients sharing ``requests`` requests (prompts in turn); answers and
    the wall time from the first request to the last answer."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i % len(PROMPTS))
    answers: list[Answer] = []
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=900, limits=limits, trust_env=False) as http:

        async def client() -> None:
            while not queue.empty():
                answers.append(await ask(http, base, queue.get_nowait(), stream))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return answers, time.perf_counter() - started


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values (a stack whose streaming failed)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def summarize(answers: list[Answer], elapsed: float, count_tokens: Any) -> dict[str, Any]:
    """Throughput and latency of one load run; tokens are counted by re-tokenising each answer
    with the model's tokenizer (``count_tokens(text)``), never taken from ``usage``."""
    ok = [a for a in answers if a.error is None]
    tokens = sum(count_tokens(a.text) for a in ok)
    ttfts = [a.ttft for a in ok if a.ttft is not None]
    return {
        "requests": len(answers),
        "errors": len(answers) - len(ok),
        "first_error": next((a.error for a in answers if a.error), None),
        "tokens": tokens,
        "usage_tokens": sum(a.usage_tokens or 0 for a in ok),
        "elapsed": elapsed,
        "tok_s": tokens / elapsed,
        "p50_latency": percentile([a.latency for a in ok], 50),
        "p95_latency": percentile([a.latency for a in ok], 95),
        "p50_ttft": percentile(ttfts, 50),
        "p95_ttft": percentile(ttfts, 95),
        "prompt_tokens": {a.prompt: a.prompt_tokens for a in ok},
        "texts": {a.prompt: a.text for a in ok},
    }


def greedy_reference(model_dir: Path) -> list[dict[str, Any]]:
    """Unbatched greedy decoding with plain transformers (one prompt at a time, KV cache, EOS
    not special), the answer every stack's temperature-0 output is checked against. Per prompt:
    prompt ids, generated ids, text and the top-1 minus top-2 logit margin of every step."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    references = []
    for prompt in PROMPTS:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(rendered, add_special_tokens=False).input_ids
        generated, margins = _greedy(model, ids)
        text = tokenizer.decode(generated, skip_special_tokens=True)
        references.append({"prompt_ids": ids, "ids": generated, "text": text, "margins": margins})
    return references


def _greedy(model: Any, ids: list[int]) -> tuple[list[int], list[float]]:
    import torch

    generated, margins, past = [], [], None
    step = torch.tensor([ids])
    with torch.inference_mode():
        for _ in range(MAX_TOKENS):
            out = model(step, past_key_values=past, use_cache=True)
            past, top = out.past_key_values, torch.topk(out.logits[0, -1], 2)
            generated.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            step = torch.tensor([[generated[-1]]])
    return generated, margins


def visible(text: str) -> str:
    """``text`` without U+FFFD: a byte-level BPE answer cut inside a UTF-8 character ends in
    bytes that FastChat and plain ``decode`` print as U+FFFD while ours and vLLM hold them back,
    so the same generated ids would otherwise compare unequal and re-tokenise to more tokens."""
    return text.replace("\ufffd", "")


def divergence_margin(reference: dict[str, Any], text: str, tokenizer: Any) -> float | None:
    """None when ``text`` equals the reference answer (U+FFFD aside); else the reference's top-2
    logit margin at the first step whose token differs in text (a near tie there means a
    float-order change in batched kernels flips the argmax, not a sampling or prompt bug)."""
    ours, theirs = visible(text), visible(reference["text"])
    if ours == theirs:
        return None
    common = next(
        (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
        min(len(ours), len(theirs)),
    )
    ids = reference["ids"]
    for step in range(len(ids)):
        if len(visible(tokenizer.decode(ids[: step + 1], skip_special_tokens=True))) > common:
            return reference["margins"][step]
    return reference["margins"][-1]
