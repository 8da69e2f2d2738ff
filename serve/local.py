"""``fastchat-lite serve local``: controller + worker + API (+ web demo) on one machine.

Each part runs as its own process (the same commands a multi-machine deployment runs), with
free ports picked for the controller and worker, and its flags derived from its section of
:class:`~serve.config.LocalConfig`. Only the API and web demo listen on ``--host``: the
controller and worker always bind 127.0.0.1, and share a worker secret (``--worker-secret``, else
``$FASTCHAT_LITE_WORKER_SECRET``, else a random one) that the children get through their
environment, never their command line, so ``ps`` does not show it (the upstream's API key
too). The API (and web demo) start only after the worker has loaded the model and registered,
so the API port being open means the model is served.
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
import os
import secrets
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastchat_lite.config import config_to_argv
from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.processes import (
    LOOPBACK,
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
from serve.auth import worker_secret_headers
from serve.config import SECRET_ENV, WORKER_SECRET_ENV, LocalConfig
from serve.engine.backends import check_model_source

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
    """``serve`` subcommand -> its config: the controller and worker on 127.0.0.1, the API and
    web demo on ``config.host``, all wired to the controller and sharing its worker secret; no
    web demo with ``no_web`` or without gradio installed."""
    place = dataclasses.replace
    controller = f"http://{LOOPBACK}:{controller_port}"
    secret = config.controller.worker_secret
    children: dict[str, Any] = {
        "controller": place(config.controller, host=LOOPBACK, port=controller_port),
        "worker": place(
            config.worker,
            host=LOOPBACK,
            port=worker_port,
            controller=controller,
            worker_secret=secret,
            max_body_bytes=2 * config.api.max_body_bytes,  # the API re-encodes what it forwards
        ),
    }
    public = {"host": config.host, "controller": controller, "worker_secret": secret}
    children["api"] = place(config.api, port=config.port, **public)
    if not config.no_web and web_available():
        children["web"] = place(config.web, port=config.web_port, **public)
    return children


def _without_secrets(child: Any) -> Any:
    unset = {name: None for name in SECRET_ENV if hasattr(child, name)}
    return dataclasses.replace(child, **unset)


def build_commands(
    config: LocalConfig, controller_port: int, worker_port: int
) -> dict[str, list[str]]:
    """Name -> argv (after ``fastchat-lite``) of each process to start; secrets are left out
    (see :func:`child_env`)."""
    children = child_configs(config, controller_port, worker_port)
    return {
        name: ["serve", name, *config_to_argv(_without_secrets(child))]
        for name, child in children.items()
    }


def child_env(config: LocalConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The children's environment: ``base`` (ours) plus the secrets their argv leaves out."""
    env = dict(os.environ if base is None else base)
    sources = {"worker_secret": config.controller, "upstream_api_key": config.worker}
    for name, section in sources.items():
        if value := getattr(section, name):
            env[SECRET_ENV[name]] = value
    return env


def _registered_models(controller_url: str, secret: str | None) -> list[str]:
    headers = worker_secret_headers(secret)
    body = fetch_json(f"{controller_url}/list_models", payload={}, headers=headers)
    return list(body["models"]) if isinstance(body, dict) and "models" in body else []


def run_local(config: LocalConfig) -> int:
    if bool(config.worker.model) == bool(config.worker.upstream):
        raise FastChatLiteError(
            "serve local needs --model DIR (a local Hugging Face model; a .gguf file with "
            "--backend llama-cpp) or --upstream URL (an OpenAI-compatible server), not both"
        )
    if config.worker.model:
        check_model_source(config.worker)
        config.worker.model = str(Path(config.worker.model).resolve())
    config.controller.worker_secret = (
        config.controller.worker_secret
        or os.environ.get(WORKER_SECRET_ENV)
        or secrets.token_urlsafe(32)
    )
    if config.worker.upstream_api_key is None:
        config.worker.upstream_api_key = os.environ.get(SECRET_ENV["upstream_api_key"])
    controller_port = config.controller_port or free_port(LOOPBACK)
    worker_port = config.worker_port or free_port(LOOPBACK)
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
    env = child_env(config)
    supervisor = Supervisor(commands, children, launch=lambda args: spawn(cli_argv(args), env=env))
    for name in ("controller", "worker"):
        supervisor.start(name)
    # The API and web demo start only once the model is registered, so the API's port
    # opening means "ready": a load balancer probing GET /v1/models never sees an empty list.
    controller_url = f"http://{LOOPBACK}:{controller_port}"
    secret = config.controller.worker_secret
    model = wait_until(
        lambda: _registered_models(controller_url, secret),
        children,
        "the worker",
        timeout=READY_TIMEOUT,
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
