"""``fastchat-lite serve web``: the Gradio chat demo on top of a running controller.

Registered by :mod:`serve.cli` (``add_parser``); gradio is imported only in :func:`run`, so
``fastchat-lite --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from fastchat_lite.config import add_dataclass_arguments, build_config


@dataclass
class WebConfig:
    """Every knob of the web demo; flags and YAML are generated from these fields."""

    controller: str = field(
        default="http://127.0.0.1:21001", metadata={"help": "controller URL to list models from"}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "interface to listen on"})
    port: int = field(default=7860, metadata={"help": "port to listen on"})
    vote_file: str | None = field(
        default=None,
        metadata={"help": "JSONL file the side-by-side votes are appended to (off if unset)"},
    )
    max_input_chars: int = field(
        default=4000, metadata={"help": "longest user message accepted, in characters"}
    )
    concurrency: int = field(
        default=32, metadata={"help": "sessions generating at the same time (others queue)"}
    )
    request_timeout: float = field(
        default=60.0, metadata={"help": "seconds to wait for the controller or a worker"}
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "web",
        help="Gradio chat demo: pick a model, chat, see the reply stream in",
        description="Example: fastchat-lite serve web --controller http://127.0.0.1:21001 "
        "--port 7860, then open http://127.0.0.1:7860",
    )
    parser.add_argument("--config", help="YAML file with WebConfig fields")
    add_dataclass_arguments(parser, WebConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = build_config(WebConfig, args, getattr(args, "config", None))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home

    from serve.cluster.client import ServeClient
    from serve.web.app import build_demo

    client = ServeClient(config.controller, timeout=config.request_timeout)
    demo = build_demo(client, max_input_chars=config.max_input_chars, vote_file=config.vote_file)
    print(f"web demo on http://{config.host}:{config.port} (controller {config.controller})")
    demo.queue(default_concurrency_limit=config.concurrency).launch(
        server_name=config.host,
        server_port=config.port,
        ssr_mode=False,  # no Node.js server process
        show_error=True,
        quiet=True,
        footer_links=[],
    )
    return 0
