"""Configs of the serving processes: one dataclass per command, the source of its CLI flags.

Kept free of heavy imports so ``fastchat-lite --help`` can build every parser quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DISPATCH_METHODS = ("shortest_queue", "lottery")


@dataclass
class ControllerConfig:
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind"})
    port: int = field(default=21001, metadata={"help": "port to bind"})
    dispatch: str = field(
        default="shortest_queue",
        metadata={"help": "how to pick a worker", "choices": list(DISPATCH_METHODS)},
    )
    worker_secret: str | None = field(
        default=None, metadata={"help": "secret workers must send to register / heartbeat"}
    )
    heartbeat_expiry: float = field(
        default=15.0, metadata={"help": "seconds without a heartbeat before a worker is dropped"}
    )


@dataclass
class WorkerConfig:
    model: str = field(default="", metadata={"help": "local Hugging Face model directory"})
    model_name: str | None = field(
        default=None, metadata={"help": "name clients use (default: the directory's name)"}
    )
    template: str | None = field(
        default=None, metadata={"help": "chat template (default: from the tokenizer config)"}
    )
    controller: str = field(default="http://127.0.0.1:21001", metadata={"help": "controller URL"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind"})
    port: int = field(default=21002, metadata={"help": "port to bind"})
    worker_address: str | None = field(
        default=None, metadata={"help": "URL the controller gives out (default: http://host:port)"}
    )
    max_batch_size: int = field(default=32, metadata={"help": "sequences decoded together"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda", "choices": ["cpu", "cuda"]})
    dtype: str = field(default="auto", metadata={"help": "auto, fp32, bf16 or fp16"})
    backend: str = field(default="hf", metadata={"help": "engine", "choices": ["hf", "vllm"]})
    context_length: int | None = field(
        default=None, metadata={"help": "override the context window (default: model config)"}
    )
    worker_secret: str | None = field(
        default=None, metadata={"help": "secret the controller requires (--worker-secret)"}
    )
    threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads (default: half the cores)"}
    )

    @property
    def address(self) -> str:
        return self.worker_address or f"http://{self.host}:{self.port}"


@dataclass
class ApiConfig:
    controller: str = field(default="http://127.0.0.1:21001", metadata={"help": "controller URL"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind"})
    port: int = field(default=8000, metadata={"help": "port to bind"})
    api_key: list[str] = field(
        default_factory=list, metadata={"help": "accepted API keys (none: no auth)"}
    )
    worker_timeout: float = field(
        default=120.0, metadata={"help": "seconds to wait for a worker's next chunk"}
    )


@dataclass
class LocalConfig:
    model: str = field(default="", metadata={"help": "local Hugging Face model directory"})
    model_name: str | None = field(default=None, metadata={"help": "name clients use"})
    template: str | None = field(default=None, metadata={"help": "chat template override"})
    host: str = field(default="127.0.0.1", metadata={"help": "address every server binds"})
    port: int = field(default=8000, metadata={"help": "OpenAI API port"})
    controller_port: int | None = field(default=None, metadata={"help": "default: a free port"})
    worker_port: int | None = field(default=None, metadata={"help": "default: a free port"})
    web_port: int = field(default=7860, metadata={"help": "web demo port"})
    no_web: bool = field(default=False, metadata={"help": "do not start the web demo"})
    vote_file: str | None = field(
        default=None, metadata={"help": "web demo: JSONL file side-by-side votes are appended to"}
    )
    api_key: list[str] = field(default_factory=list, metadata={"help": "API keys to require"})
    max_batch_size: int = field(default=32, metadata={"help": "sequences decoded together"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda", "choices": ["cpu", "cuda"]})
    backend: str = field(default="hf", metadata={"help": "engine", "choices": ["hf", "vllm"]})
