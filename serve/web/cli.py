"""``fastchat-lite serve web``: the Gradio chat demo on top of a running controller.

Registered by :mod:`serve.cli` (``add_parser``); its options are :class:`serve.config.WebConfig`.
gradio is imported only in :func:`run`, so ``fastchat-lite --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os

from fastchat_lite.config import add_config_arguments, build_config
from serve.config import DEFAULT_CONTROLLER_URL, DEFAULT_WEB_PORT, WebConfig, secrets_from_env


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "web",
        help="Gradio chat demo: pick a model, chat, see the reply stream in",
        description=f"Example: fastchat-lite serve web --controller {DEFAULT_CONTROLLER_URL} "
        f"--port {DEFAULT_WEB_PORT}, then open http://127.0.0.1:{DEFAULT_WEB_PORT}",
    )
    add_config_arguments(parser, WebConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = secrets_from_env(build_config(WebConfig, args, args.config))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home

    from serve.cluster.client import ServeClient
    from serve.web.app import build_demo

    client = ServeClient(
        config.controller, timeout=config.request_timeout, worker_secret=config.worker_secret
    )
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
