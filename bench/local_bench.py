"""Local inference: our stack (torch worker; llama-cpp backend on GGUF) vs llama.cpp alone.

    python bench/local_bench.py [--rounds 3] [--workdir DIR] [--json out.json] [--small]

One random-init ~100M-parameter Llama (hidden 768, 12 layers, 12 heads, MLP 2048, vocab 16,384,
context 2048; ``bench/local_workload.py`` builds it and caches it in ``--workdir``) is served by:

- ours, torch: ``serve local --model DIR --dtype fp32`` (the HF safetensors, batching engine);
- ours, llama-cpp: ``serve local --backend llama-cpp --model X.gguf`` at f16, q8_0 and q4_K_M;
- llama.cpp alone: ``python -m llama_cpp.server`` on each same file (the llama-cpp-python our
  backend uses), tuned as its docs say: as many threads as ours, ``--logits_all False`` (its
  default True keeps every position's logits), ``--interrupt_requests False`` (its default True
  cuts a stream short whenever another request arrives, which breaks concurrent clients);
- ``llama-server`` (llama.cpp's C++ server) on each file, when it is on PATH: ``--parallel``
  slots with continuous batching, ``--no-repack`` for quantized files on AMX CPUs.

Every server is its own process, started for its turn and stopped with SIGTERM after, all with
``--threads`` threads (default: every core) and the same context. A turn: one untimed
non-streaming request (checks prompt tokens and the greedy text), then single stream
(``--requests`` streamed greedy chat requests one after another, max_tokens 128), then
``--streams`` concurrent clients sending ``--per-stream`` requests each. Resident memory is
sampled every 0.1 s during the turn: the process holding the model and the whole process tree
(our stack also runs a launcher, a controller and an API). Rounds run the contenders in order,
then in reverse, so each pair alternates; the table shows medians over rounds, followed by the
issue's targets with PASS or MISS: ours llama-cpp / each peer per file type (judged against the
strongest), and q4_K_M / the torch worker in tokens/s and in the worker's resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.local_report import MIB, report
from bench.local_workload import (
    FILE_TYPES,
    FULL,
    MODEL_NAME,
    SMALL,
    RssSampler,
    build_model,
    check_request,
    concurrent_streams,
    export_ggufs,
    single_stream,
)
from fastchat_lite.processes import (
    cli_argv,
    free_port,
    listed_models,
    offline_env,
    spawn,
    stop,
    wait_until,
)
from serve.engine.llama_cpp import cpu_has_amx


@dataclass
class Contender:
    """One server to measure: how to start it and what its requests carry."""

    label: str
    stack: str  # "ours", "llama_cpp.server" or "llama-server"
    file_type: str  # "fp32" for the torch worker, else the GGUF's type
    model: Path
    argv: Callable[[int], list[str]]  # port -> command line
    extra: dict[str, Any] = field(default_factory=dict)  # added to every request body

    @property
    def key(self) -> str:
        """How results, logs and --only name this contender."""
        return f"{self.label} {self.file_type}"

    def is_model_process(self, proc: psutil.Process) -> bool:
        """The process that holds the weights: our worker, or the peer's only process."""
        if self.stack != "ours":
            return True
        cmdline = proc.cmdline()
        return "serve" in cmdline and "worker" in cmdline


def ours(model: Path, threads: int, file_type: str) -> Contender:
    backend = ["--dtype", "fp32"] if file_type == "fp32" else ["--backend", "llama-cpp"]
    label = "ours torch" if file_type == "fp32" else "ours llama-cpp"

    def argv(port: int) -> list[str]:
        return cli_argv(["serve", "local", "--model", model, "--model-name", MODEL_NAME,
                         "--no-web", "--port", port, "--threads", threads, *backend])  # fmt: skip

    return Contender(label, "ours", file_type, model, argv, {"ignore_eos": True})


def llama_cpp_python(model: Path, threads: int, file_type: str, context: int) -> Contender:
    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                "--model_alias", MODEL_NAME, "--n_threads", str(threads),
                "--n_threads_batch", str(threads), "--n_ctx", str(context),
                "--logits_all", "False", "--interrupt_requests", "False",
                "--verbose", "False", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip

    # Its request default repeat_penalty is 1.1; 1.0 makes its greedy text comparable to ours.
    extra = {"repeat_penalty": 1.0}
    return Contender("llama_cpp.server", "llama_cpp.server", file_type, model, argv, extra)


def llama_server(
    binary: str, model: Path, threads: int, file_type: str, context: int, slots: int
) -> Contender:
    # -c is the KV cache of all slots together (older servers split it, newer share it): the
    # same 2048 tokens the others hold, enough for 8 slots of this workload (~180 tokens each).
    repack = ["--no-repack"] if file_type != "f16" and cpu_has_amx() else []

    def argv(port: int) -> list[str]:
        return [binary, "-m", str(model), "--alias", MODEL_NAME, "-t", str(threads),
                "-tb", str(threads), "-c", str(context), "--parallel", str(slots),
                "--host", "127.0.0.1", "--port", str(port), *repack]  # fmt: skip

    extra = {"ignore_eos": True, "repeat_penalty": 1.0}
    return Contender("llama-server", "llama-server", file_type, model, argv, extra)


def contenders(
    args: argparse.Namespace, model_dir: Path, ggufs: dict[str, Path]
) -> list[Contender]:
    """The torch worker first, then per file type ours followed by each peer."""
    context = (SMALL if args.small else FULL).context_length
    binary = shutil.which("llama-server")
    amx = cpu_has_amx()
    found = [ours(model_dir, args.torch_threads or args.threads, "fp32")]
    for kind in FILE_TYPES:
        found.append(ours(ggufs[kind], args.threads, kind))
        if amx and kind != "f16":  # llama_cpp.server cannot turn repacking off
            print(f"AMX CPU: llama_cpp.server left out at {kind} (it crashes with repacking on)")
        else:
            found.append(llama_cpp_python(ggufs[kind], args.threads, kind, context))
        if binary:
            found.append(
                llama_server(binary, ggufs[kind], args.threads, kind, context, args.streams)
            )
    return found


def start_server(contender: Contender, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The server in its own process group, so stopping it reaches our launcher's children."""
    with log.open("wb") as handle:
        return spawn(contender.argv(port), env=offline_env(), log=handle, own_group=True)


def wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float) -> None:
    def describe_exit(_name: str, code: int) -> str:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        return f"server exited with code {code}; end of {log}:\n" + "\n".join(tail)

    wait_until(
        lambda: listed_models(base),
        {"server": proc},
        base,
        timeout=timeout,
        describe_exit=describe_exit,
    )


def measure(contender: Contender, args: argparse.Namespace, log: Path) -> dict[str, Any]:
    """Start ``contender`` (output to ``log``), run the workload against it, stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    started = time.perf_counter()
    proc = start_server(contender, port, log)
    sampler = RssSampler(proc.pid, contender.is_model_process)
    try:
        wait_ready(proc, base, log, timeout=600)
        load_s = time.perf_counter() - started
        check = asyncio.run(check_request(base, args.max_tokens, contender.extra))
        single = asyncio.run(single_stream(base, args.requests, args.max_tokens, contender.extra))
        multi = asyncio.run(
            concurrent_streams(
                base, args.streams, args.per_stream, args.max_tokens, contender.extra
            )
        )
    finally:
        sampler.sample()
        stop([proc], grace=15, group=True)
        sampler.stop()
    return {
        "load_s": load_s,
        "check": check,
        "single": single,
        "concurrent": multi,
        "rss_model": sampler.peak_model,
        "rss_tree": sampler.peak_tree,
    }


def run_rounds(
    order: list[Contender],
    args: argparse.Namespace,
    workdir: Path,
    checkpoint: Callable[[dict[str, Any]], None],
) -> dict[str, list[dict[str, Any]]]:
    """Each contender's result per round; odd rounds run the list backwards. ``checkpoint``
    gets the results so far after every turn, so a failure late in a long run keeps them."""
    results: dict[str, list[dict[str, Any]]] = {c.key: [] for c in order}
    for round_index in range(args.rounds):
        turn = order if round_index % 2 == 0 else order[::-1]
        for contender in turn:
            log = workdir / f"{contender.key.replace(' ', '-')}-round{round_index + 1}.log"
            result = measure(contender, args, log)
            results[contender.key].append(result)
            checkpoint(results)
            print(
                f"round {round_index + 1}: {contender.key:32} "
                f"1-stream {result['single']['decode_tok_s']:7.1f} tok/s, "
                f"{args.streams} streams {result['concurrent']['aggregate_tok_s']:7.1f} tok/s, "
                f"model RSS {result['rss_model'] / MIB:6.0f} MiB",
                flush=True,
            )
    return results


def machine() -> dict[str, Any]:
    import llama_cpp
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "amx": cpu_has_amx(),
        "llama_cpp_python": llama_cpp.__version__,
        "torch": torch.__version__,
        "llama_server": shutil.which("llama-server"),
        "load_avg_start": os.getloadavg(),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Written to a temp file beside ``path``, then renamed: never a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="single-stream requests (default: 8; 3 with --small)",
    )
    parser.add_argument("--streams", type=int, default=8, help="concurrent clients")
    parser.add_argument(
        "--per-stream",
        type=int,
        default=None,
        help="requests per concurrent client (default: 2; 1 with --small)",
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads of every server (default: every core)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="the torch worker's threads (default: --threads)",
    )
    parser.add_argument(
        "--small", action="store_true", help="hidden 256, 4 layers, vocab 4,096: a smoke run"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="model, GGUFs and logs; reused by later runs (default: a temp dir)",
    )
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only contenders whose name contains TEXT (repeatable), "
                        "e.g. 'q4_K_M' or 'ours torch'")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    args = parser.parse_args(argv)
    args.requests = args.requests or (3 if args.small else 8)
    args.per_stream = args.per_stream or (1 if args.small else 2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="local-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        setup = machine()
        model_dir = build_model(workdir, SMALL if args.small else FULL)
        ggufs = export_ggufs(model_dir, workdir)
        order = [
            c for c in contenders(args, model_dir, ggufs)
            if not args.only or any(text in c.key for text in args.only)
        ]  # fmt: skip

        def save(results: dict[str, Any], summary: dict[str, Any] | None = None) -> None:
            if args.json:
                payload = {"args": vars(args), "setup": setup, "summary": summary}
                write_json(args.json, {**payload, "results": results})

        results = run_rounds(order, args, workdir, save)
        summary = report(args, order, results)
        setup["load_avg_end"] = os.getloadavg()
        save(results, summary)
        print(f"\nload average {setup['load_avg_start']} -> {setup['load_avg_end']}")
        if args.workdir:
            print(f"model, GGUFs and server logs: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
