"""Serving: ours vs vLLM's CPU build vs FastChat 0.2.36, one tiny model, one client, one run.

    python bench/serve_bench.py [--stacks ours,vllm,fastchat] [--concurrency 1,8,32]
        [--rounds 3] [--fastchat-limits 5,16,32] [--json out.json] [--small]

The model: a random-init Llama (hidden 256, 4 layers, 4 heads / 2 KV heads, vocab 2,048, fp32)
saved by transformers 4.57 (FastChat's venv), which FastChat's 4.57, vLLM's 5.19 and our 5.2x
all load, with our vicuna_v1.1 chat template (FastChat gets ``--conv-template vicuna_v1.1``);
prompt token counts are compared per prompt to prove every stack sees the same prompt.

Per concurrency level (1, 8, 32 clients; max(32, 4 x clients) requests over 16 fixed prompts,
max_tokens 64, temperature 0, ``ignore_eos``) each stack serves one non-streaming run (tok/s,
latency, peak RSS of its process tree) and, where its streaming works, one streaming run (TTFT).
Generated tokens are counted by re-tokenising every answer with the model's tokenizer. A round
starts a stack, runs every level, stops it (SIGTERM to each process group); rounds rotate the
stack order and medians over rounds are reported. vLLM (60-110 s to start) stays up across its
rounds; its CPU use while the others run is reported. FastChat's ``--limit-worker-concurrency``
is swept first at the top level and its best is kept. Answers of the first round are checked
against unbatched transformers greedy decoding. Finally, the controller + API hop: a 1-token
request straight to our worker vs through our API. Facts: ../shared/BASELINES.md, PEERS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.baseline_env import ensure_fschat_venv, ensure_serve_extras
from bench.serve_report import report
from bench.serve_stacks import (
    VLLM_PYTHON,
    PeakRss,
    Running,
    cpu_seconds,
    loaded_modules,
    start_fastchat,
    start_ours,
    start_vllm,
    stop_stack,
    wait_ready,
)
from bench.serve_workload import (
    MODEL_NAME,
    PROMPTS,
    build_model,
    divergence_margin,
    greedy_reference,
    load,
    summarize,
    visible,
)

STACKS = ("ours", "vllm", "fastchat")


@dataclass
class Bench:
    """Everything one benchmark run shares and collects."""

    args: argparse.Namespace
    workdir: Path
    model: Path
    fschat_python: Path | None
    tokenizer: Any
    references: list[dict]
    records: list[dict] = field(default_factory=list)
    greedy: dict[str, dict[int, dict]] = field(default_factory=dict)
    streaming_works: dict[str, str] = field(default_factory=dict)
    uvloop: dict[str, dict[str, bool]] = field(default_factory=dict)
    hops: list[tuple[float, float]] = field(default_factory=list)
    sweep: dict[int, float] = field(default_factory=dict)
    fastchat_limit: int = 5
    vllm: Running | None = None
    vllm_idle: list[tuple[float, float]] = field(default_factory=list)  # (cpu s, wall s)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(visible(text), add_special_tokens=False).input_ids)

    def requests_at(self, level: int) -> int:
        return self.args.requests or max(32, 4 * level)


def run_level(bench: Bench, stack: Running, level: int, round_: int, stream: bool) -> None:
    """One non-streaming run (and one streaming run if ``stream``) of ``level`` clients."""
    n, rss = bench.requests_at(level), PeakRss(stack.pids())
    base = {"stack": stack.name, "round": round_, "level": level}
    plain = {
        **base,
        "mode": "plain",
        **summarize(*asyncio.run(load(stack.api, n, level, False)), bench.count_tokens),
    }
    if stream:
        streamed = summarize(*asyncio.run(load(stack.api, n, level, True)), bench.count_tokens)
        bench.records.append({**base, "mode": "stream", **streamed})
    plain["peak_rss"] = rss.stop()
    plain["load_avg"] = os.getloadavg()[0]  # other jobs on the machine show up here
    bench.records.append(plain)
    if round_ == 0:
        bench.greedy.setdefault(stack.name, {})[level] = greedy_check(bench, plain["texts"])
    print(
        f"  {stack.name} {level} clients: {plain['tok_s']:,.0f} tok/s, p50 "
        f"{plain['p50_latency'] or 0:.3f} s, {plain['errors']} failed",
        flush=True,
    )


def greedy_check(bench: Bench, texts: dict[int, str]) -> dict[str, Any]:
    """How many answers equal unbatched HF greedy, and the margins where they differ."""
    margins = [
        m
        for i, text in texts.items()
        if (m := divergence_margin(bench.references[i], text, bench.tokenizer)) is not None
    ]
    return {"equal": len(texts) - len(margins), "total": len(texts), "margins": margins}


def start(bench: Bench, name: str) -> Running:
    """A fresh stack (vLLM: the one kept up), ready to serve."""
    if name == "vllm":
        if bench.vllm is None:
            bench.vllm = start_vllm(bench.model, bench.workdir, preload=bench.args.vllm_preload)
            print(f"  vLLM LD_PRELOAD: {bench.vllm.settings['ld_preload'] or 'none'}", flush=True)
            wait_ready(bench.vllm, timeout=600)
        return bench.vllm
    stack = (
        start_ours(bench.model, bench.workdir)
        if name == "ours"
        else start_fastchat(bench.fschat_python, bench.model, bench.workdir, bench.fastchat_limit)
    )
    wait_ready(stack, timeout=300)
    return stack


def warm_up(bench: Bench, stack: Running) -> bool:
    """Untimed requests; whether one streaming request completes (records why when not)."""
    asyncio.run(load(stack.api, 8, 8, False))
    asyncio.run(load(stack.api, 2, 1, False))
    answers, _ = asyncio.run(load(stack.api, 1, 1, True))
    bench.streaming_works[stack.name] = answers[0].error or "works"
    bench.uvloop.setdefault(stack.name, loaded_modules(stack, "uvloop"))
    return answers[0].error is None


def turn(bench: Bench, name: str, round_: int) -> None:
    """One stack's turn in a round: start, every level, (ours) the hop, stop."""
    stack = start(bench, name)
    try:
        stream = warm_up(bench, stack)
        for level in bench.args.concurrency:
            run_level(bench, stack, level, round_, stream)
        if name == "ours":
            bench.hops.append(asyncio.run(hop_latency(stack, bench.args.hop_samples)))
    finally:
        if name != "vllm":
            stop_stack(stack)


def run_rounds(bench: Bench) -> None:
    """Rounds rotating the stack order; vLLM's CPU use is sampled while the others run."""
    stacks = bench.args.stacks
    for round_ in range(bench.args.rounds):
        order = stacks[round_ % len(stacks) :] + stacks[: round_ % len(stacks)]
        print(f"round {round_ + 1}: {', '.join(order)}", flush=True)
        for name in order:
            idle = (cpu_seconds(bench.vllm.pids()), time.monotonic()) if bench.vllm else None
            turn(bench, name, round_)
            if idle and name != "vllm" and bench.vllm:
                cpu, wall = cpu_seconds(bench.vllm.pids()) - idle[0], time.monotonic() - idle[1]
                bench.vllm_idle.append((cpu, wall))


def sweep_fastchat(bench: Bench) -> None:
    """FastChat's ``--limit-worker-concurrency`` at the top level, one run each; keep the best."""
    top = max(bench.args.concurrency)
    limits = sorted({min(limit, top) for limit in bench.args.fastchat_limits})
    for limit in limits if len(limits) > 1 else []:
        bench.fastchat_limit = limit
        stack = start(bench, "fastchat")
        try:
            asyncio.run(load(stack.api, 8, 8, False))
            answers, elapsed = asyncio.run(load(stack.api, bench.requests_at(top), top, False))
            bench.sweep[limit] = summarize(answers, elapsed, bench.count_tokens)["tok_s"]
            print(f"  fastchat sweep: limit {limit}: {bench.sweep[limit]:,.0f} tok/s", flush=True)
        finally:
            stop_stack(stack)
    bench.fastchat_limit = (
        max(bench.sweep, key=bench.sweep.__getitem__) if bench.sweep else limits[0]
    )


async def hop_latency(stack: Running, samples: int) -> tuple[float, float]:
    """p50 seconds of a 1-token request straight to our worker and through our API."""
    direct, routed = [], []
    gen = {"prompt": PROMPTS[0], "params": {"temperature": 0, "max_tokens": 1}}
    body = {"model": MODEL_NAME, "prompt": PROMPTS[0], "temperature": 0, "max_tokens": 1}
    async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
        for _ in range(samples):
            t = time.perf_counter()
            (await http.post(f"{stack.worker}/worker_generate_stream", json=gen)).raise_for_status()
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            (await http.post(f"{stack.api}/v1/completions", json=body)).raise_for_status()
            routed.append(time.perf_counter() - t)
    return statistics.median(direct), statistics.median(routed)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(part) for part in text.split(",")]

    def stacks(text: str) -> list[str]:
        names = text.split(",")
        if unknown := set(names) - set(STACKS):
            raise argparse.ArgumentTypeError(f"unknown stacks {sorted(unknown)}; known: {STACKS}")
        return names

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stacks", type=stacks, default=list(STACKS))
    parser.add_argument("--concurrency", type=ints, default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="requests per level (default: max(32, 4 x clients))",
    )
    parser.add_argument("--fastchat-limits", type=ints, default=[5, 16, 32])
    parser.add_argument("--hop-samples", type=int, default=60)
    parser.add_argument(
        "--no-vllm-preload",
        dest="vllm_preload",
        action="store_false",
        help="start vLLM without the TCMalloc / Intel OpenMP preloads its CPU docs recommend",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    parser.add_argument("--workdir", type=Path, default=None, help="keep model and logs here")
    parser.add_argument(
        "--small",
        action="store_true",
        help="quick check: 1 and 8 clients, 1 round, 16 requests, limits 5,8",
    )
    args = parser.parse_args(argv)
    if args.small:
        args.concurrency, args.rounds, args.requests = [1, 8], 1, 16
        args.fastchat_limits, args.hop_samples = [5, 8], 20
    return args


def prepare(args: argparse.Namespace, workdir: Path) -> Bench:
    """Venvs, the model (saved by the oldest transformers among the stacks) and the reference."""
    from transformers import AutoTokenizer

    if "vllm" in args.stacks and not VLLM_PYTHON.exists():
        raise SystemExit(f"no vLLM venv at {VLLM_PYTHON.parent.parent}: run `make install-vllm`")
    fschat = None
    if "fastchat" in args.stacks:
        fschat = ensure_fschat_venv()
        ensure_serve_extras(fschat)
    builder = fschat or (VLLM_PYTHON if "vllm" in args.stacks else Path(sys.executable))
    model = build_model(builder, workdir)
    tokenizer = AutoTokenizer.from_pretrained(model)
    return Bench(args, workdir, model, fschat, tokenizer, greedy_reference(model))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        bench = prepare(args, workdir)
        try:
            if "fastchat" in args.stacks:
                sweep_fastchat(bench)
            run_rounds(bench)
        finally:
            if bench.vllm:
                stop_stack(bench.vllm)
        raw = report(bench)
        print(f"logs: {workdir}")
        if args.json:
            args.json.write_text(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
