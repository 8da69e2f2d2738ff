"""Every wire schema of the serving stack, as pydantic v2 models, with validation on the fields.

Two families live here so that clients, servers and tests import the same definitions:

* the OpenAI-compatible API (requests, responses, stream chunks, the error body);
* the internal messages between API server / client, controller and workers.

Unknown fields are ignored, as OpenAI does, so newer clients sending extra options still work.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_N = 8
MAX_STOP = 4


# torch.Generator takes a 64-bit seed; OpenAI documents seed as an integer without a range.
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="ignore")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


# ---------------------------------------------------------------- errors


class ErrorInfo(_Schema):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


class ErrorResponse(_Schema):
    error: ErrorInfo


# ---------------------------------------------------------------- sampling (shared)


class TextPart(_Schema):
    type: Literal["text"]
    text: str


class ChatMessage(_Schema):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def as_dict(self) -> dict[str, str]:
        """``{"role", "content"}`` with ``developer`` folded into ``system``."""
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.text()}


class SamplingParams(_Schema):
    """What a worker needs to generate one sequence; the API fills it from either endpoint."""

    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    top_k: Annotated[int, Field(ge=-1)] = -1  # -1 or 0: off
    max_tokens: Annotated[int, Field(ge=1)] | None = None  # None: up to the context window
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    repetition_penalty: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0
    stop: list[str] = Field(default_factory=list)
    stop_token_ids: list[int] = Field(default_factory=list)
    seed: Seed | None = None
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5 or self.top_k == 1


def _stop_list(value: Any) -> Any:
    """OpenAI's ``stop``: a string or up to 4 non-empty strings."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        if len(value) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences are allowed")
        if any(isinstance(s, str) and not s for s in value):
            raise ValueError("stop sequences must be non-empty strings")
    return value


class StreamOptions(_Schema):
    include_usage: bool = False


class _GenerationRequest(_Schema):
    """Fields both OpenAI endpoints share, with OpenAI's defaults and ranges."""

    model: Annotated[str, Field(min_length=1)]
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 1
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: list[str] = Field(default_factory=list)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: Seed | None = None
    user: str | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    # Extensions (vLLM / FastChat names).
    top_k: Annotated[int, Field(ge=-1)] = -1
    repetition_penalty: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0

    _stop = field_validator("stop", mode="before")(_stop_list)

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> _GenerationRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def sampling_params(self, index: int = 0) -> SamplingParams:
        """Parameters of choice ``index``: with a seed, each choice gets its own (seed + index)."""
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_tokens=self.max_tokens,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            repetition_penalty=self.repetition_penalty,
            stop=self.stop,
            seed=None if self.seed is None else self.seed + index,
        )


# ---------------------------------------------------------------- OpenAI: chat


class ChatCompletionRequest(_GenerationRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _newer_max_tokens_name(self) -> ChatCompletionRequest:
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        return self


class UsageInfo(_Schema):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


FinishReason = Literal["stop", "length"]


class ResponseMessage(_Schema):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatCompletionChoice(_Schema):
    index: int
    message: ResponseMessage
    finish_reason: FinishReason | None
    logprobs: None = None


class ChatCompletionResponse(_Schema):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatCompletionChoice]
    usage: UsageInfo
    system_fingerprint: str | None = None


class DeltaMessage(_Schema):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(_Schema):
    index: int
    delta: DeltaMessage
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(_Schema):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: UsageInfo | None = None


# ---------------------------------------------------------------- OpenAI: completions


class CompletionRequest(_GenerationRequest):
    prompt: str | Annotated[list[str], Field(min_length=1)]
    echo: bool = False

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class CompletionChoice(_Schema):
    index: int
    text: str
    finish_reason: FinishReason | None = None
    logprobs: None = None


class CompletionResponse(_Schema):
    """Both the full response and each stream chunk (OpenAI uses one shape for both)."""

    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


# ---------------------------------------------------------------- OpenAI: models


class ModelCard(_Schema):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "fastchat-lite"


class ModelList(_Schema):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ---------------------------------------------------------------- controller <-> worker


class RegisterWorkerRequest(_Schema):
    worker_address: Annotated[str, Field(min_length=1)]
    model_names: Annotated[list[str], Field(min_length=1)]
    capacity: Annotated[int, Field(ge=1)] = 1
    context_length: Annotated[int, Field(ge=1)] = 2048
    queue_length: Annotated[int, Field(ge=0)] = 0


class RegisterWorkerResponse(_Schema):
    heartbeat_interval: float


class HeartbeatRequest(_Schema):
    worker_address: str
    queue_length: Annotated[int, Field(ge=0)] = 0


class HeartbeatResponse(_Schema):
    known: bool  # False: the controller forgot us (restart, expiry): register again


class WorkerAddressRequest(_Schema):
    model: str


class WorkerAddressResponse(_Schema):
    address: str
    context_length: int


class ReportFailureRequest(_Schema):
    worker_address: str


class ListModelsResponse(_Schema):
    models: list[str]


class WorkerState(_Schema):
    address: str
    model_names: list[str]
    capacity: int
    context_length: int
    queue_length: int
    seconds_since_heartbeat: float


class ControllerStatus(_Schema):
    workers: list[WorkerState]
    models: list[str]
    dispatch: str


# ---------------------------------------------------------------- API / client <-> worker


class GenerateRequest(_Schema):
    """One sequence to generate: chat ``messages`` (templated by the worker) or a raw ``prompt``."""

    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    params: SamplingParams = Field(default_factory=SamplingParams)

    @model_validator(mode="after")
    def _exactly_one_input(self) -> GenerateRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages or prompt")
        return self


class GenerateChunk(_Schema):
    """One NDJSON line of a worker stream; the last one has ``finish_reason`` or ``error``."""

    text: str = ""
    finish_reason: Literal["stop", "length", "abort"] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: ErrorInfo | None = None
    error_status: int | None = None


class WorkerStatus(_Schema):
    model_names: list[str]
    capacity: int
    context_length: int
    queue_length: int  # running + waiting sequences
    running: int
    waiting: int
