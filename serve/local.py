"""``fastchat-lite serve local``: controller + worker + API (+ web demo) on one machine.

Each part runs as its own process (the same commands a multi-machine deployment runs), on
127.0.0.1 by default, with free ports picked for the controller and worker, and its flags
derived from its section of :class:`~serve.config.LocalConfig`. The API (and web demo) start
only after the worker has loaded the model and registered, so the API port being open means the
model is served.
Ctrl-C or SIGTERM stops every child (TERM, then KILL after a grace period); children also get
SIGTERM from the kernel if this launcher dies abruptly, so nothing is left orphaned.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fastchat_lite.config import config_to_argv
from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.model_loading import check_model_dir
from fastchat_lite.processes import (
    cli_argv,
    fetch_json,
    free_port,
    listed_models,
    sigterm_as_interrupt,
    spawn,
    stop,
    wait_until,
)
from serve.config import LocalConfig

READY_TIMEOUT = 600.0
GRACE_SECONDS = 5.0


def web_available() -> bool:
    return (
        importlib.util.find_spec("gradio") is not None
        and importlib.util.find_spec("serve.web.cli") is not None
    )


def child_configs(config: LocalConfig, controller_port: int, worker_port: int) -> dict[str, Any]:
    """``serve`` subcommand -> its config, placed on ``config.host`` and wired to the
    controller; no web demo with ``no_web`` or without gradio installed."""
    place = dataclasses.replace
    controller = f"http://{config.host}:{controller_port}"
    children: dict[str, Any] = {
        "controller": place(config.controller, host=config.host, port=controller_port),
        "worker": place(
            config.worker,
            host=config.host,
            port=worker_port,
            controller=controller,
            worker_secret=config.controller.worker_secret,
        ),
        "api": place(config.api, host=config.host, port=config.port, controller=controller),
    }
    if not config.no_web and web_available():
        children["web"] = place(
            config.web, host=config.host, port=config.web_port, controller=controller
        )
    return children


def build_commands(
    config: LocalConfig, controller_port: int, worker_port: int
) -> dict[str, list[str]]:
    """Name -> argv (after ``fastchat-lite``) of each process to start."""
    children = child_configs(config, controller_port, worker_port)
    return {name: ["serve", name, *config_to_argv(child)] for name, child in children.items()}


def _registered_models(controller_url: str) -> list[str]:
    body = fetch_json(f"{controller_url}/list_models", payload={})
    return list(body["models"]) if isinstance(body, dict) and "models" in body else []


def run_local(config: LocalConfig) -> int:
    if not config.worker.model:
        raise FastChatLiteError("serve local needs --model DIR (a local Hugging Face model)")
    check_model_dir(config.worker.model)
    config.worker.model = str(Path(config.worker.model).resolve())
    controller_port = config.controller_port or free_port(config.host)
    worker_port = config.worker_port or free_port(config.host)
    children: dict[str, subprocess.Popen] = {}
    try:
        with sigterm_as_interrupt():
            return _start_and_watch(config, controller_port, worker_port, children)
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr, flush=True)
        return 0
    finally:
        stop(children.values(), grace=GRACE_SECONDS)


def _start_and_watch(
    config: LocalConfig,
    controller_port: int,
    worker_port: int,
    children: dict[str, subprocess.Popen],
) -> int:
    """Start the children into ``children`` (the caller stops them); return 1 when one exits."""
    commands = build_commands(config, controller_port, worker_port)
    for name in ("controller", "worker"):
        children[name] = spawn(cli_argv(commands.pop(name)))
    # The API and web demo start only once the model is registered, so the API's port
    # opening means "ready": a load balancer probing GET /v1/models never sees an empty list.
    controller_url = f"http://{config.host}:{controller_port}"
    wait_until(
        lambda: _registered_models(controller_url), children, "the worker", timeout=READY_TIMEOUT
    )
    for name, args in commands.items():
        children[name] = spawn(cli_argv(args))
    api_base = f"http://{config.host}:{config.port}/v1"
    api_key = config.api.api_key[0] if config.api.api_key else None
    model = wait_until(
        lambda: listed_models(api_base, api_key), children, "the API", timeout=READY_TIMEOUT
    )[0]
    print(f"\nmodel {model!r} is ready:", flush=True)
    print(f"  OpenAI API   {api_base}", flush=True)
    print(f"  controller   {controller_url}", flush=True)
    if "web" in children:
        print(f"  web demo     http://{config.host}:{config.web_port}", flush=True)
    print("press Ctrl-C to stop", flush=True)
    while all(proc.poll() is None for proc in children.values()):
        time.sleep(0.5)
    dead = [n for n, p in children.items() if p.poll() is not None]
    print(f"fastchat-lite: {', '.join(dead)} exited; stopping the rest", file=sys.stderr)
    return 1
