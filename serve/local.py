"""``fastchat-lite serve local``: controller + worker + API (+ web demo) on one machine.

Each part runs as its own process (the same commands a multi-machine deployment runs), on
127.0.0.1 by default, with free ports picked for the controller and worker, and its flags
derived from its section of :class:`~serve.config.LocalConfig`. The API (and web demo) start
only after the worker has loaded the model and registered, so the API port being open means the
model is served.
Once ready, the launcher supervises: a child that exits (a worker killed by the OOM killer, a
crashed API) is restarted on the same port after a backoff of 1, 2, 4, ... s (at most 30 s),
with the reason (exit code or signal) in the log; meanwhile the API answers 503 with
``Retry-After``. A child restarted more than 5 times in 10 minutes stops everything with a
message saying which and why, since restarting is then not fixing it.
Ctrl-C or SIGTERM stops every child (TERM, then KILL after a grace period); children also get
SIGTERM from the kernel if this launcher dies abruptly, so nothing is left orphaned.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastchat_lite.config import config_to_argv
from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.model_loading import check_model_dir
from fastchat_lite.processes import (
    cli_argv,
    exit_reason,
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
MAX_RESTARTS = 5  # per child, within RESTART_WINDOW
RESTART_WINDOW = 600.0
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 30.0
POLL_SECONDS = 0.5


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
            max_body_bytes=2 * config.api.max_body_bytes,  # the API re-encodes what it forwards
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
    """Start the children into ``children`` (the caller stops them) and supervise them; return
    1 when one keeps dying."""
    commands = build_commands(config, controller_port, worker_port)
    supervisor = Supervisor(commands, children)
    for name in ("controller", "worker"):
        supervisor.start(name)
    # The API and web demo start only once the model is registered, so the API's port
    # opening means "ready": a load balancer probing GET /v1/models never sees an empty list.
    controller_url = f"http://{config.host}:{controller_port}"
    model = wait_until(
        lambda: _registered_models(controller_url), children, "the worker", timeout=READY_TIMEOUT
    )[0]
    early = dict(children)  # controller and worker
    for name in commands:
        if name not in children:
            supervisor.start(name)
    api_base = f"http://{config.host}:{config.port}/v1"
    api_key = config.api.api_key[0] if config.api.api_key else None

    # An API that cannot start (port taken) stops everything; a controller or worker dying
    # meanwhile ends this wait too, for the supervisor to restart it.
    def api_ready() -> bool:
        return bool(listed_models(api_base, api_key)) or any(
            proc.poll() is not None for proc in early.values()
        )

    late = {name: proc for name, proc in children.items() if name not in early}
    wait_until(api_ready, late, "the API", timeout=READY_TIMEOUT)
    print(f"\nmodel {model!r} is ready:", flush=True)
    print(f"  OpenAI API   {api_base}", flush=True)
    print(f"  controller   {controller_url}", flush=True)
    if "web" in children:
        print(f"  web demo     http://{config.host}:{config.web_port}", flush=True)
    print("press Ctrl-C to stop", flush=True)
    return supervisor.watch()


def _say(message: str) -> None:
    print(f"fastchat-lite: {message}", file=sys.stderr, flush=True)


class Supervisor:
    """Starts the children of ``serve local`` and restarts any that exits (see the module
    docstring for the policy); ``children`` is the caller's live name -> process map, so its
    cleanup always stops the current processes. ``clock`` and ``launch`` are injectable."""

    def __init__(
        self,
        commands: dict[str, list[str]],
        children: dict[str, subprocess.Popen],
        *,
        clock: Callable[[], float] = time.monotonic,
        launch: Callable[[list[str]], subprocess.Popen] = lambda args: spawn(cli_argv(args)),
    ) -> None:
        self.commands = commands
        self.children = children
        self.clock = clock
        self.launch = launch
        self.restarts: dict[str, deque[float]] = {name: deque() for name in commands}
        self.due: dict[str, float] = {}  # name -> when its pending restart is due

    def start(self, name: str) -> None:
        self.children[name] = proc = self.launch(self.commands[name])
        _say(f"started the {name} (pid {proc.pid})")

    def check(self) -> str | None:
        """Restart what is due, schedule the restart of what exited; the reason to stop
        everything when a child used up its restarts, else None."""
        now = self.clock()
        for name, proc in self.children.items():
            if name in self.due:
                if now >= self.due[name]:
                    del self.due[name]
                    self.restarts[name].append(now)
                    self.start(name)
                continue
            if proc.poll() is None:
                continue
            recent = self.restarts[name]
            while recent and now - recent[0] > RESTART_WINDOW:
                recent.popleft()
            why = f"the {name} (pid {proc.pid}) {exit_reason(proc.returncode)}"
            if len(recent) >= MAX_RESTARTS:
                minutes = RESTART_WINDOW / 60
                return f"{why} after {len(recent)} restarts in {minutes:.0f} min; giving up"
            delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** len(recent))
            _say(
                f"{why}; restarting it in {delay:.0f} s "
                f"(restart {len(recent) + 1} of {MAX_RESTARTS} allowed in "
                f"{RESTART_WINDOW / 60:.0f} min)"
            )
            self.due[name] = now + delay
        return None

    def watch(self) -> int:
        """Supervise until a child exhausts its restarts (1; the caller stops the rest)."""
        while (reason := self.check()) is None:
            time.sleep(POLL_SECONDS)
        _say(f"{reason}; stopping serve local")
        return 1
