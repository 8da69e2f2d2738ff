"""``fastchat-lite serve local``: controller + worker + API (+ web demo) on one machine.

Each part runs as its own process (the same commands a multi-machine deployment runs), on
127.0.0.1 by default, with free ports picked for the controller and worker. The API (and web
demo) start only after the worker has loaded the model and registered, so the API port being
open means the model is served.
Ctrl-C or SIGTERM stops every child (TERM, then KILL after a grace period); children also get
SIGTERM from the kernel if this launcher dies abruptly, so nothing is left orphaned.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.model_loading import check_model_dir
from serve.config import LocalConfig

READY_TIMEOUT = 600.0
GRACE_SECONDS = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux only)
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(args: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "fastchat_lite.cli", *args]
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    return subprocess.Popen(command, preexec_fn=preexec)


def _models_listed(api_url: str, keys: list[str]) -> list[str]:
    request = urllib.request.Request(f"{api_url}/v1/models")
    if keys:
        request.add_header("Authorization", f"Bearer {keys[0]}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return [m["id"] for m in json.load(response)["data"]]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return []


def _controller_models(controller_url: str) -> list[str]:
    request = urllib.request.Request(f"{controller_url}/list_models", data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return list(json.load(response)["models"])
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return []


def web_available() -> bool:
    return (
        importlib.util.find_spec("gradio") is not None
        and importlib.util.find_spec("serve.web.cli") is not None
    )


def build_commands(config: LocalConfig, controller_port: int, worker_port: int) -> dict:
    """Name -> argv (after ``fastchat-lite``) of each process to start."""
    host = config.host
    controller = f"http://{host}:{controller_port}"
    worker = ["serve", "worker", "--model", config.model, "--controller", controller]
    worker += ["--host", host, "--port", str(worker_port), "--device", config.device]
    worker += ["--max-batch-size", str(config.max_batch_size), "--backend", config.backend]
    if config.model_name:
        worker += ["--model-name", config.model_name]
    if config.template:
        worker += ["--template", config.template]
    api = ["serve", "api", "--controller", controller, "--host", host, "--port", str(config.port)]
    if config.api_key:
        api += ["--api-key", *config.api_key]
    commands = {
        "controller": ["serve", "controller", "--host", host, "--port", str(controller_port)],
        "worker": worker,
        "api": api,
    }
    if not config.no_web and web_available():
        commands["web"] = [
            "serve", "web", "--controller", controller, "--host", host,
            "--port", str(config.web_port),
        ]  # fmt: skip
        if config.vote_file:
            commands["web"] += ["--vote-file", config.vote_file]
    return commands


def _stop_all(children: dict[str, subprocess.Popen]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for proc in children.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_for(probe, children: dict[str, subprocess.Popen], what: str) -> list[str]:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        for name, proc in children.items():
            if proc.poll() is not None:
                raise FastChatLiteError(f"the {name} process exited with code {proc.returncode}")
        if found := probe():
            return found
        time.sleep(0.3)
    raise FastChatLiteError(f"{what} was not ready after {READY_TIMEOUT:.0f} s")


def run_local(config: LocalConfig) -> int:
    if not config.model:
        raise FastChatLiteError("serve local needs --model DIR (a local Hugging Face model)")
    check_model_dir(config.model)
    config.model = str(Path(config.model).resolve())
    controller_port = config.controller_port or free_port(config.host)
    worker_port = config.worker_port or free_port(config.host)
    children: dict[str, subprocess.Popen] = {}

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        commands = build_commands(config, controller_port, worker_port)
        for name in ("controller", "worker"):
            children[name] = _spawn(commands.pop(name))
        # The API and web demo start only once the model is registered, so the API's port
        # opening means "ready": a load balancer probing GET /v1/models never sees an empty list.
        controller_url = f"http://{config.host}:{controller_port}"
        _wait_for(lambda: _controller_models(controller_url), children, "the worker")
        for name, args in commands.items():
            children[name] = _spawn(args)
        api_url = f"http://{config.host}:{config.port}"
        model = _wait_for(lambda: _models_listed(api_url, config.api_key), children, "the API")[0]
        print(f"\nmodel {model!r} is ready:", flush=True)
        print(f"  OpenAI API   http://{config.host}:{config.port}/v1", flush=True)
        print(f"  controller   http://{config.host}:{controller_port}", flush=True)
        if "web" in children:
            print(f"  web demo     http://{config.host}:{config.web_port}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        while all(proc.poll() is None for proc in children.values()):
            time.sleep(0.5)
        dead = [n for n, p in children.items() if p.poll() is not None]
        print(f"fastchat-lite: {', '.join(dead)} exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_all(children)
