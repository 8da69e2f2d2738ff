"""The public OpenAI-compatible API: every request, response and stream chunk, with validation
next to the field (ranges, defaults, OpenAI's aliases). Routes, the service and tests import these.

Unknown fields are ignored, as OpenAI does, so newer clients sending extra options still work.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from serve.schemas import ChatMessage, FinishReason, SamplingParams, Schema, Seed, new_id

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


class StreamOptions(Schema):
    include_usage: bool = False


class _GenerationRequest(Schema):
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
            ignore_eos=self.ignore_eos,
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
