"""Configs of the serving processes: one dataclass per command, the source of its CLI flags.

``serve local`` composes the controller, worker, API and web configs (see
:class:`LocalConfig`); each child then gets its flags back from its own config, so a field
added to, say, :class:`WorkerConfig` works under ``serve local`` with no further change.
Kept free of heavy imports so ``fastchat-lite --help`` can build every parser quickly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from fastchat_lite.processes import LOOPBACK

C = TypeVar("C")

DISPATCH_METHODS = ("shortest_queue", "lottery")
DEFAULT_CONTROLLER_PORT = 21001
DEFAULT_CONTROLLER_URL = f"http://{LOOPBACK}:{DEFAULT_CONTROLLER_PORT}"
DEFAULT_API_PORT = 8000
DEFAULT_WEB_PORT = 7860
DEFAULT_TEMPERATURE = 0.7  # what the web demo, terminal chat and ServeClient sample with
MAX_INPUT_CHARS = 4000  # longest user message the web demo accepts
# Request bodies: 4 MiB holds a 128k-token context even as JSON-escaped text (6 bytes per CJK
# character); workers accept twice the API's cap (the API re-encodes what it forwards), the
# controller's messages are small.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
CONTROLLER_MAX_BODY_BYTES = 1024 * 1024
# Secrets also come from the environment, so `serve local` hands them to its children without
# putting them on a command line that `ps` shows (see :func:`secrets_from_env`).
WORKER_SECRET_ENV = "FASTCHAT_LITE_WORKER_SECRET"
UPSTREAM_API_KEY_ENV = "FASTCHAT_LITE_UPSTREAM_API_KEY"
SECRET_ENV = {"worker_secret": WORKER_SECRET_ENV, "upstream_api_key": UPSTREAM_API_KEY_ENV}
_SECRET_HELP = f" (default: ${WORKER_SECRET_ENV})"
_INSECURE_HELP = "allow binding a non-loopback address without --worker-secret"


@dataclass
class ControllerConfig:
    host: str = field(default=LOOPBACK, metadata={"help": "address to bind"})
    port: int = field(default=DEFAULT_CONTROLLER_PORT, metadata={"help": "port to bind"})
    dispatch: str = field(
        default="shortest_queue",
        metadata={"help": "how to pick a worker", "choices": list(DISPATCH_METHODS)},
    )
    worker_secret: str | None = field(
        default=None,
        metadata={"help": "secret every caller but /health must send" + _SECRET_HELP},
    )
    insecure: bool = field(default=False, metadata={"help": _INSECURE_HELP})
    heartbeat_expiry: float = field(
        default=15.0, metadata={"help": "seconds without a heartbeat before a worker is dropped"}
    )
    max_body_bytes: int = field(
        default=CONTROLLER_MAX_BODY_BYTES,
        metadata={"help": "largest request body accepted (larger: 413)"},
    )


@dataclass
class WorkerConfig:
    model: str = field(
        default="",
        metadata={"help": "local Hugging Face model directory (a .gguf file: --backend llama-cpp)"},
    )
    model_name: str | None = field(
        default=None,
        metadata={"help": "name clients use (default: the directory's name or --upstream-model)"},
    )
    upstream: str | None = field(
        default=None,
        metadata={"help": "serve an OpenAI-compatible server at this base URL (.../v1)"},
    )
    upstream_model: str | None = field(
        default=None, metadata={"help": "model name the upstream serves (default: its first)"}
    )
    upstream_api_key: str | None = field(
        default=None,
        metadata={"help": f"API key the upstream requires (default: ${UPSTREAM_API_KEY_ENV})"},
    )
    template: str | None = field(
        default=None, metadata={"help": "chat template (default: from the tokenizer config)"}
    )
    controller: str = field(default=DEFAULT_CONTROLLER_URL, metadata={"help": "controller URL"})
    host: str = field(default=LOOPBACK, metadata={"help": "address to bind"})
    port: int = field(default=21002, metadata={"help": "port to bind"})
    worker_address: str | None = field(
        default=None, metadata={"help": "URL the controller gives out (default: http://host:port)"}
    )
    max_batch_size: int = field(default=32, metadata={"help": "sequences decoded together"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda", "choices": ["cpu", "cuda"]})
    dtype: str = field(default="auto", metadata={"help": "auto, fp32, bf16 or fp16"})
    backend: str = field(
        default="hf",
        metadata={
            "help": "engine: hf (torch), vllm (GPU) or llama-cpp (a GGUF file, CPU)",
            "choices": ["hf", "vllm", "llama-cpp"],
        },
    )
    context_length: int | None = field(
        default=None,
        metadata={
            "help": "override the context window (default: model config / GGUF / upstream's)"
        },
    )
    worker_secret: str | None = field(
        default=None,
        metadata={"help": "secret shared with the controller and API callers" + _SECRET_HELP},
    )
    insecure: bool = field(default=False, metadata={"help": _INSECURE_HELP})
    threads: int | None = field(
        default=None,
        metadata={"help": "CPU threads of torch or llama.cpp (default: half the cores)"},
    )
    repack: str = field(
        default="auto",
        metadata={
            "help": "llama.cpp weight repacking; auto = off on AMX CPUs, where quantized "
            "models crash with it",
            "choices": ["auto", "on", "off"],
        },
    )
    max_body_bytes: int = field(
        default=2 * DEFAULT_MAX_BODY_BYTES,
        metadata={"help": "largest request body accepted (larger: 413); at least 2x the API's"},
    )

    @property
    def address(self) -> str:
        return self.worker_address or f"http://{self.host}:{self.port}"


@dataclass
class ApiConfig:
    controller: str = field(default=DEFAULT_CONTROLLER_URL, metadata={"help": "controller URL"})
    host: str = field(default=LOOPBACK, metadata={"help": "address to bind"})
    port: int = field(default=DEFAULT_API_PORT, metadata={"help": "port to bind"})
    api_key: list[str] = field(
        default_factory=list, metadata={"help": "accepted API keys (none: no auth)"}
    )
    worker_secret: str | None = field(
        default=None,
        metadata={"help": "secret sent to the controller and workers" + _SECRET_HELP},
    )
    worker_timeout: float = field(
        default=120.0, metadata={"help": "seconds to wait for a worker's next chunk"}
    )
    max_body_bytes: int = field(
        default=DEFAULT_MAX_BODY_BYTES,
        metadata={"help": "largest request body accepted, in bytes (larger: 413)"},
    )


@dataclass
class WebConfig:
    """Every knob of the web demo (``serve web``)."""

    controller: str = field(
        default=DEFAULT_CONTROLLER_URL, metadata={"help": "controller URL to list models from"}
    )
    host: str = field(default=LOOPBACK, metadata={"help": "interface to listen on"})
    port: int = field(default=DEFAULT_WEB_PORT, metadata={"help": "port to listen on"})
    vote_file: str | None = field(
        default=None,
        metadata={"help": "JSONL file the side-by-side votes are appended to (off if unset)"},
    )
    max_input_chars: int = field(
        default=MAX_INPUT_CHARS, metadata={"help": "longest user message accepted, in characters"}
    )
    concurrency: int = field(
        default=32, metadata={"help": "sessions generating at the same time (others queue)"}
    )
    request_timeout: float = field(
        default=60.0, metadata={"help": "seconds to wait for the controller or a worker"}
    )
    worker_secret: str | None = field(
        default=None,
        metadata={"help": "secret sent to the controller and workers" + _SECRET_HELP},
    )


# Where each child listens and which controller it talks to is the launcher's to decide.
_PLACED = ("controller", "host", "port")


@dataclass
class LocalConfig:
    """``serve local``: the four children's configs plus where they listen.

    The sections' fields are options of ``serve local`` under their own names (``--dtype``,
    ``--api-key``, ``--vote-file``, ...; see :mod:`fastchat_lite.config`), except host, port
    and controller URL, set from the fields below, the worker secret, which is the
    controller's (one ``--worker-secret`` reaches every child; ``serve local`` makes one up
    when none is given), ``--insecure`` (the controller and worker always bind 127.0.0.1), and
    the body caps: ``--max-body-bytes`` is the API's, the worker gets twice that and the
    controller keeps its default.
    """

    host: str = field(
        default=LOOPBACK,
        metadata={"help": "address the API and web demo bind (controller, worker: 127.0.0.1)"},
    )
    port: int = field(default=DEFAULT_API_PORT, metadata={"help": "OpenAI API port"})
    controller_port: int | None = field(default=None, metadata={"help": "default: a free port"})
    worker_port: int | None = field(default=None, metadata={"help": "default: a free port"})
    web_port: int = field(default=DEFAULT_WEB_PORT, metadata={"help": "web demo port"})
    no_web: bool = field(default=False, metadata={"help": "do not start the web demo"})
    controller: ControllerConfig = field(
        default_factory=ControllerConfig,
        metadata={"parent_sets": (*_PLACED, "max_body_bytes", "insecure")},
    )
    worker: WorkerConfig = field(
        default_factory=WorkerConfig,
        metadata={"parent_sets": (*_PLACED, "worker_secret", "max_body_bytes", "insecure")},
    )
    api: ApiConfig = field(
        default_factory=ApiConfig, metadata={"parent_sets": (*_PLACED, "worker_secret")}
    )
    web: WebConfig = field(
        default_factory=WebConfig, metadata={"parent_sets": (*_PLACED, "worker_secret")}
    )


def secrets_from_env(config: C, environ: Mapping[str, str] | None = None) -> C:
    """``config`` with each secret field left unset (``worker_secret``, ``upstream_api_key``)
    taken from its environment variable (:data:`SECRET_ENV`), when that is set."""
    environ = os.environ if environ is None else environ
    found = {
        name: environ[var]
        for name, var in SECRET_ENV.items()
        if hasattr(config, name) and getattr(config, name) is None and environ.get(var)
    }
    return dataclasses.replace(config, **found) if found else config  # type: ignore[type-var]
