"""Internal messages of the cluster: controller <-> worker, and API server / client <-> worker.

Not a public API: the OpenAI-compatible schemas are in :mod:`serve.openai.schemas`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from serve.errors import ServeError
from serve.schemas import (
    ChatMessage,
    ErrorInfo,
    RequestSchema,
    SamplingParams,
    Schema,
    WorkerFinishReason,
)

# ---------------------------------------------------------------- controller <-> worker


class RegisterWorkerRequest(RequestSchema):
    worker_address: Annotated[str, Field(min_length=1)]
    model_names: Annotated[list[str], Field(min_length=1)]
    capacity: Annotated[int, Field(ge=1)] = 1
    context_length: Annotated[int, Field(ge=1)] = 2048
    queue_length: Annotated[int, Field(ge=0)] = 0


class RegisterWorkerResponse(Schema):
    heartbeat_interval: float


class HeartbeatRequest(RequestSchema):
    worker_address: str
    queue_length: Annotated[int, Field(ge=0)] = 0


class HeartbeatResponse(Schema):
    known: bool  # False: the controller forgot us (restart, expiry): register again


class WorkerAddressRequest(RequestSchema):
    model: str


class WorkerAddressResponse(Schema):
    address: str
    context_length: int


class ReportFailureRequest(RequestSchema):
    worker_address: str


class ListModelsResponse(Schema):
    models: list[str]


class WorkerState(Schema):
    address: str
    model_names: list[str]
    capacity: int
    context_length: int
    queue_length: int
    seconds_since_heartbeat: float


class ControllerStatus(Schema):
    workers: list[WorkerState]
    models: list[str]
    dispatch: str


# ---------------------------------------------------------------- API / client <-> worker


class GenerateRequest(RequestSchema):
    """One sequence to generate: chat ``messages`` (templated by the worker) or a raw ``prompt``."""

    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    params: SamplingParams = Field(default_factory=SamplingParams)
    # False: the caller wants only the whole reply (a non-streaming API request), so the worker
    # sends it as one chunk instead of a line per burst of tokens for the caller to join.
    stream: bool = True

    @model_validator(mode="after")
    def _exactly_one_input(self) -> GenerateRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages or prompt")
        return self

    @property
    def source(self) -> str | list[ChatMessage]:
        """What the prompt is built from: the raw ``prompt`` or the chat ``messages``."""
        return self.prompt if self.prompt is not None else list(self.messages or [])


class GenerateChunk(Schema):
    """One NDJSON line of a worker stream; the last one has ``finish_reason`` or ``error``."""

    text: str = ""
    finish_reason: WorkerFinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: ErrorInfo | None = None
    error_status: int | None = None

    @classmethod
    def failure(cls, exc: ServeError) -> GenerateChunk:
        """The last line of a stream that failed after its headers were sent."""
        return cls(error=exc.to_info(), error_status=exc.status_code)

    def raise_if_failed(self) -> None:
        """Re-raise the worker's error as the matching :class:`ServeError`."""
        if self.error is not None:
            raise ServeError.from_info(self.error, self.error_status or 500)


class WorkerStatus(Schema):
    model_names: list[str]
    capacity: int
    context_length: int
    queue_length: int  # running + waiting sequences
    running: int
    waiting: int
    aborted: int = 0  # sequences cancelled (caller gone) or dropped at shutdown, since start
