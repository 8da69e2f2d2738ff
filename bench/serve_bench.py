"""Serving throughput and latency: our stack vs FastChat's (fschat==0.2.36), same tiny model.

    python bench/serve_bench.py [--runs 3] [--requests 128] [--concurrency 32]

Both stacks serve one random-init Llama (2 layers, hidden 128, 4 heads / 2 KV heads, vocab
1,536) saved by transformers 4.57 (built here with the baseline venv's python, so both load it)
with the vicuna_v1.1 prompt. 32 concurrent clients send 128 non-streaming chat requests (16
fixed prompts, temperature 0, max_tokens 64); runs alternate between the stacks and the medians
are reported. FastChat's SSE streaming is broken under pydantic 2, so TTFT is measured for ours
alone (streaming). Finally, the added latency of the controller + API hop: a 1-token request
straight to our worker vs through the API. Facts about the baseline: ../shared/BASELINES.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.baseline_env import baseline_env, ensure_fschat_venv
from fastchat_lite.processes import cli_argv, free_port, listed_models, spawn, stop, wait_until
from fastchat_lite.templates import DEFAULT_TEMPLATE

Stack = dict[str, subprocess.Popen[bytes]]  # log name (``<name>.log`` in the workdir) -> process

MODEL_NAME = "toymodel"  # a basename that picks no special FastChat adapter
PROMPTS = [
    f"Question {i}: " + " ".join(["explain how a tiny model answers questions"] * (1 + i % 4))
    for i in range(16)
]
BUILD_SCRIPT = """
import sys, torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
out = sys.argv[1]
texts = [l.strip() for l in open(sys.argv[2], encoding="utf-8") if l.strip()]
backend = Tokenizer(models.BPE())
backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
backend.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=1536, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
backend.train_from_iterator(texts * 20, trainer)
backend.post_processor = processors.TemplateProcessing(
    single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))])
tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                              eos_token="</s>", pad_token="<pad>", model_max_length=2048)
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
LlamaForCausalLM(cfg).save_pretrained(out)
tok.save_pretrained(out)
"""
CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "USER: ASSISTANT:",
    *PROMPTS,
    "The quick brown fox jumps over the lazy dog. 1234567890",
]


def build_model(python: Path, workdir: Path) -> Path:
    out = workdir / MODEL_NAME
    corpus = workdir / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    script = workdir / "build_model.py"
    script.write_text(BUILD_SCRIPT)
    subprocess.run([str(python), str(script), str(out), str(corpus)], check=True)
    return out


def start(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """A server in its own process group (so :func:`stop_all` reaches its children too)."""
    with log.open("wb") as handle:
        return spawn(argv, env=env, cwd=cwd, log=handle, own_group=True)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    # grace=0: FastChat's TERM waits for in-flight requests, so the groups are killed at once.
    stop(procs, grace=0, group=True)


def wait_models(stack: Stack, api: str, workdir: Path, timeout: float = 180) -> None:
    """Until ``api`` lists a model; fails early, with the log's tail, if a server exits."""

    def describe_exit(name: str, code: int) -> str:
        tail = (workdir / f"{name}.log").read_text(errors="replace").splitlines()[-20:]
        return f"{name} exited with code {code}; end of {workdir / name}.log:\n" + "\n".join(tail)

    wait_until(
        lambda: listed_models(f"{api}/v1"), stack, api, timeout=timeout, describe_exit=describe_exit
    )


def start_ours(model: Path, workdir: Path) -> tuple[Stack, str, str]:
    cport, wport, aport = free_port(), free_port(), free_port()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    controller = f"http://127.0.0.1:{cport}"
    worker = ["serve", "worker", "--model", model, "--template", DEFAULT_TEMPLATE,
              "--controller", controller, "--port", wport, "--max-batch-size", 32]  # fmt: skip
    commands = {
        "ours-c": ["serve", "controller", "--port", cport],
        "ours-w": worker,
        "ours-a": ["serve", "api", "--controller", controller, "--port", aport],
    }
    stack = {
        name: start(cli_argv(args), env, workdir, workdir / f"{name}.log")
        for name, args in commands.items()
    }
    return stack, f"http://127.0.0.1:{aport}", f"http://127.0.0.1:{wport}"


def start_fastchat(python: Path, model: Path, workdir: Path) -> tuple[Stack, str]:
    cport, wport, aport = free_port(), free_port(), free_port()
    env = baseline_env(workdir / "fschat-logs")
    controller = f"http://127.0.0.1:{cport}"
    mod = [str(python), "-m"]
    cwd = model.parent  # plain relative path: the adapter is chosen from the path's words
    # "vicuna_v1.1" is FastChat's own name for its conv template, not ours (our worker gets
    # DEFAULT_TEMPLATE, the same prompt format: the report checks prompt token counts match).
    commands = {
        "fs-c": [*mod, "fastchat.serve.controller", "--port", str(cport)],
        "fs-w": [*mod, "fastchat.serve.model_worker", "--model-path", MODEL_NAME,
                 "--device", "cpu", "--conv-template", "vicuna_v1.1",
                 "--controller-address", controller, "--port", str(wport),
                 "--worker-address", f"http://127.0.0.1:{wport}"],
        "fs-a": [*mod, "fastchat.serve.openai_api_server", "--port", str(aport),
                 "--controller-address", controller],
    }  # fmt: skip
    stack = {name: start(cmd, env, cwd, workdir / f"{name}.log") for name, cmd in commands.items()}
    return stack, f"http://127.0.0.1:{aport}"


async def one_request(http: httpx.AsyncClient, base: str, prompt: str, stream: bool) -> dict:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": 64,
        "stream": stream,
    }
    started = time.perf_counter()
    if not stream:
        response = await http.post(f"{base}/v1/chat/completions", json=body)
        data = response.json()
        choice, usage = data["choices"][0], data["usage"]
        generated = 64 if choice["finish_reason"] == "length" else usage["completion_tokens"]
        latency = time.perf_counter() - started
        text = choice["message"]["content"]
        return {"latency": latency, "ttft": None, "tokens": generated,
                "prompt_tokens": usage["prompt_tokens"], "text": text}  # fmt: skip
    body["stream_options"] = {"include_usage": True}
    ttft, text, usage = None, [], {}
    async with http.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content"):
                    ttft = ttft or time.perf_counter() - started
                    text.append(choice["delta"]["content"])
    return {"latency": time.perf_counter() - started, "ttft": ttft,
            "tokens": usage["completion_tokens"], "prompt_tokens": usage["prompt_tokens"],
            "text": "".join(text)}  # fmt: skip


async def load_test(base: str, requests: int, concurrency: int, stream: bool) -> dict:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    results: list[dict] = []
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=600, limits=limits, trust_env=False) as http:

        async def client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                result = await one_request(http, base, PROMPTS[i % len(PROMPTS)], stream)
                results.append({**result, "prompt": i % len(PROMPTS)})

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    tokens = sum(r["tokens"] for r in results)
    return {
        "tok_s": tokens / elapsed,
        "p50_latency": percentile([r["latency"] for r in results], 50),
        "p95_latency": percentile([r["latency"] for r in results], 95),
        "p50_ttft": percentile([r["ttft"] for r in results if r["ttft"]], 50) if stream else None,
        "p95_ttft": percentile([r["ttft"] for r in results if r["ttft"]], 95) if stream else None,
        "prompt_tokens": {r["prompt"]: r["prompt_tokens"] for r in results},
        "texts": {r["prompt"]: r["text"] for r in results},
    }


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def hop_latency(api: str, worker: str, samples: int = 60) -> tuple[float, float]:
    """p50 seconds of a 1-token request straight to the worker and through the API."""
    direct, routed = [], []
    gen = {"prompt": PROMPTS[0], "params": {"temperature": 0, "max_tokens": 1}}
    body = {"model": MODEL_NAME, "prompt": PROMPTS[0], "temperature": 0, "max_tokens": 1}
    async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
        for _ in range(samples):
            t = time.perf_counter()
            (await http.post(f"{worker}/worker_generate_stream", json=gen)).raise_for_status()
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            (await http.post(f"{api}/v1/completions", json=body)).raise_for_status()
            routed.append(time.perf_counter() - t)
    return statistics.median(direct), statistics.median(routed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    python = ensure_fschat_venv()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        workdir = Path(tmp)
        model = build_model(python, workdir)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            ours, ours_api, ours_worker = start_ours(model, workdir)
            procs += ours.values()
            theirs, theirs_api = start_fastchat(python, model, workdir)
            procs += theirs.values()
            wait_models(ours, ours_api, workdir)
            wait_models(theirs, theirs_api, workdir)
            report(args, ours_api, ours_worker, theirs_api, workdir)
        finally:
            stop_all(procs)
    return 0


def report(args, ours_api: str, ours_worker: str, theirs_api: str, workdir: Path) -> None:
    n, c = args.requests, args.concurrency
    asyncio.run(load_test(ours_api, 32, 32, False))  # warm-up both
    asyncio.run(load_test(theirs_api, 8, 8, False))
    ours_runs, theirs_runs, stream_runs = [], [], []
    for run in range(args.runs):
        ours_runs.append(asyncio.run(load_test(ours_api, n, c, False)))
        theirs_runs.append(asyncio.run(load_test(theirs_api, n, c, False)))
        stream_runs.append(asyncio.run(load_test(ours_api, n, c, True)))
        print(
            f"run {run + 1}: ours {ours_runs[-1]['tok_s']:.0f} tok/s, "
            f"fastchat {theirs_runs[-1]['tok_s']:.0f} tok/s, "
            f"ours streaming {stream_runs[-1]['tok_s']:.0f} tok/s", flush=True,
        )  # fmt: skip
    same_prompts = ours_runs[0]["prompt_tokens"] == theirs_runs[0]["prompt_tokens"]
    same_text = sum(ours_runs[0]["texts"][p] == theirs_runs[0]["texts"][p] for p in range(16))
    direct, routed = asyncio.run(hop_latency(ours_api, ours_worker))

    def med(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    ours_tps, theirs_tps = med(ours_runs, "tok_s"), med(theirs_runs, "tok_s")
    print(f"\n{c} concurrent clients, {n} requests, max_tokens 64, temperature 0, median of "
          f"{args.runs} alternating runs (prompt token counts identical: {same_prompts}; "
          f"identical greedy answers: {same_text}/16)")  # fmt: skip
    print(f"{'':28}{'ours':>12}{'fastchat':>12}{'ratio':>10}")
    print(f"{'generated tok/s':28}{ours_tps:12.0f}{theirs_tps:12.0f}{ours_tps / theirs_tps:9.1f}x")
    for key, label in (("p50_latency", "p50 latency s"), ("p95_latency", "p95 latency s")):
        a, b = med(ours_runs, key), med(theirs_runs, key)
        print(f"{label:28}{a:12.3f}{b:12.3f}{b / a:9.1f}x")
    print(f"{'ours streaming tok/s':28}{med(stream_runs, 'tok_s'):12.0f}")
    print(f"{'ours streaming p50 TTFT s':28}{med(stream_runs, 'p50_ttft'):12.3f}")
    print(f"{'ours streaming p95 TTFT s':28}{med(stream_runs, 'p95_ttft'):12.3f}")
    print(
        f"\ncontroller + API hop (1-token request, p50): worker direct {direct * 1000:.1f} ms, "
        f"via API {routed * 1000:.1f} ms, added {(routed - direct) * 1000:.1f} ms"
    )
    print(f"logs: {workdir}")


if __name__ == "__main__":
    sys.exit(main())
