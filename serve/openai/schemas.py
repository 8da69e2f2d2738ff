"""The public OpenAI-compatible API: every request, response and stream chunk, with validation
next to the field (ranges, defaults, OpenAI's aliases). Routes, the service and tests import these.

Unknown fields are ignored, so newer clients sending extra options still work; but an OpenAI
parameter this server does not implement (:data:`UNSUPPORTED`) is a 400 naming it, so a client
asking for, say, JSON mode is told it would not get it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from serve.schemas import (
    ChatMessage,
    FinishReason,
    RequestSchema,
    SamplingParams,
    Schema,
    Seed,
    new_id,
)

MAX_N = 8
MAX_STOP = 4


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


def _is_set(value: Any) -> bool:
    return value is not None and value is not False and value != [] and value != {}


def _not_text_format(value: Any) -> bool:
    return value is not None and not (isinstance(value, dict) and value.get("type") == "text")


# OpenAI parameters this server does not implement: name -> (is it asked for?, why not).
# A value that asks for nothing (false, null, [], {}, "none", 1, {"type": "text"}) passes.
UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "logprobs": (_is_set, "this server does not return log probabilities"),
    "top_logprobs": (lambda v: v not in (None, 0), "this server does not return log probabilities"),
    "tools": (_is_set, "this server does not support tool calling"),
    "tool_choice": (lambda v: v not in (None, "none"), "this server does not support tool calling"),
    "functions": (_is_set, "this server does not support function calling"),
    "function_call": (
        lambda v: v not in (None, "none"),
        "this server does not support function calling",
    ),
    "response_format": (
        _not_text_format,
        'this server has no JSON mode (only {"type": "text"} is accepted)',
    ),
    "logit_bias": (_is_set, "this server does not apply logit biases"),
    "best_of": (lambda v: v not in (None, 1), "this server generates no extra candidates; use n"),
    "suffix": (lambda v: v not in (None, ""), "this server does not insert text before a suffix"),
}


def _reject_unsupported(value: Any, info: ValidationInfo) -> Any:
    name = info.field_name or "?"
    requested, why = UNSUPPORTED[name]
    if requested(value):
        raise PydanticCustomError(
            "unsupported_parameter",
            "Unsupported parameter: '{param}': {why}; remove it from the request",
            {"param": name, "why": why},
        )
    return value


def _unsupported_field() -> Any:
    return Field(default=None, description="not supported: rejected unless it asks for nothing")


class StreamOptions(RequestSchema):
    include_usage: bool = False


class _GenerationRequest(RequestSchema):
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
    ignore_eos: bool = False
    # OpenAI parameters we do not implement (see UNSUPPORTED): declared only to refuse them.
    logprobs: Any = _unsupported_field()
    logit_bias: Any = _unsupported_field()

    _stop = field_validator("stop", mode="before")(_stop_list)
    _unsupported = field_validator("logprobs", "logit_bias")(_reject_unsupported)

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
            ignore_eos=self.ignore_eos,
        )


# ---------------------------------------------------------------- OpenAI: chat


class ChatCompletionRequest(_GenerationRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    top_logprobs: Any = _unsupported_field()
    tools: Any = _unsupported_field()
    tool_choice: Any = _unsupported_field()
    functions: Any = _unsupported_field()
    function_call: Any = _unsupported_field()
    response_format: Any = _unsupported_field()

    _unsupported_chat = field_validator(
        "top_logprobs", "tools", "tool_choice", "functions", "function_call", "response_format"
    )(_reject_unsupported)

    @model_validator(mode="after")
    def _newer_max_tokens_name(self) -> ChatCompletionRequest:
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        return self


class UsageInfo(Schema):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ResponseMessage(Schema):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatCompletionChoice(Schema):
    index: int
    message: ResponseMessage
    finish_reason: FinishReason | None
    logprobs: None = None


class ChatCompletionResponse(Schema):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatCompletionChoice]
    usage: UsageInfo
    system_fingerprint: str | None = None


class DeltaMessage(Schema):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(Schema):
    index: int
    delta: DeltaMessage
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(Schema):
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
    best_of: Any = _unsupported_field()
    suffix: Any = _unsupported_field()

    _unsupported_completion = field_validator("best_of", "suffix")(_reject_unsupported)

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class CompletionChoice(Schema):
    index: int
    text: str
    finish_reason: FinishReason | None = None
    logprobs: None = None


class CompletionResponse(Schema):
    """Both the full response and each stream chunk (OpenAI uses one shape for both)."""

    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


# ---------------------------------------------------------------- OpenAI: models


class ModelCard(Schema):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "fastchat-lite"


class ModelList(Schema):
    object: Literal["list"] = "list"
    data: list[ModelCard]
