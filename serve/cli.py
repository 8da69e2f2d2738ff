"""``fastchat-lite serve {controller,worker,api,local,web}``: one subcommand per process.

Each takes its options from its config dataclass in :mod:`serve.config`, as flags or from
``--config YAML`` (flags win); secrets left unset come from the environment
(``FASTCHAT_LITE_WORKER_SECRET``, ``FASTCHAT_LITE_UPSTREAM_API_KEY``). Heavy imports (torch,
fastapi, uvicorn) happen inside the ``run_*`` functions so that ``fastchat-lite --help`` stays
fast.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from fastchat_lite.config import add_config_arguments, build_config
from fastchat_lite.errors import FastChatLiteError
from serve.config import ApiConfig, ControllerConfig, LocalConfig, WorkerConfig, secrets_from_env


def serve_app(app: Any, host: str, port: int) -> int:
    """Run an ASGI app in the foreground until Ctrl-C / SIGTERM."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    return 0


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run_controller(args: argparse.Namespace) -> int:
    from serve.auth import check_exposure
    from serve.cluster.controller import create_app

    config = secrets_from_env(build_config(ControllerConfig, args, args.config))
    check_exposure("controller", config.host, config.worker_secret, config.insecure)
    _logging()
    print(f"controller listening on http://{config.host}:{config.port}", flush=True)
    return serve_app(create_app(config), config.host, config.port)


def run_worker(args: argparse.Namespace) -> int:
    from serve.auth import check_exposure
    from serve.cluster.worker import build_service, create_app

    config = secrets_from_env(build_config(WorkerConfig, args, args.config))
    if bool(config.model) == bool(config.upstream):
        raise FastChatLiteError(
            "serve worker needs --model DIR (a local Hugging Face model; a .gguf file with "
            "--backend llama-cpp) or --upstream URL "
            "(an OpenAI-compatible server), not both"
        )
    check_exposure("worker", config.host, config.worker_secret, config.insecure)
    _logging()
    service = build_service(config)
    print(
        f"worker for {', '.join(service.model_names)} on {config.address} "
        f"(controller {config.controller})",
        flush=True,
    )
    return serve_app(create_app(config, service=service), config.host, config.port)


def run_api(args: argparse.Namespace) -> int:
    from serve.openai.app import create_app

    config = secrets_from_env(build_config(ApiConfig, args, args.config))
    _logging()
    print(f"OpenAI-compatible API on http://{config.host}:{config.port}/v1", flush=True)
    return serve_app(create_app(config), config.host, config.port)


def run_local(args: argparse.Namespace) -> int:
    from serve.local import run_local as launch

    return launch(build_config(LocalConfig, args, args.config))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a model: controller, workers, OpenAI API, web demo"
    )
    sub = parser.add_subparsers(dest="serve_command", metavar="SERVE_COMMAND", required=True)
    commands = [
        ("controller", "track workers and dispatch requests", ControllerConfig, run_controller),
        ("worker", "load a model and generate in batches", WorkerConfig, run_worker),
        ("api", "OpenAI-compatible REST API", ApiConfig, run_api),
        ("local", "controller + worker + API (+ web) in one command", LocalConfig, run_local),
    ]
    for name, help_text, config_cls, runner in commands:
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_config_arguments(command, config_cls)
        command.set_defaults(run=runner)
    try:
        from serve.web import cli as web_cli
    except ModuleNotFoundError as exc:
        if exc.name != "serve.web.cli":
            raise
    else:
        web_cli.add_parser(sub)
