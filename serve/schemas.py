"""The primitives both wire families share: the OpenAI API (:mod:`serve.openai.schemas`) and the
controller / worker messages (:mod:`serve.cluster.protocol`).

Unknown fields are ignored, so newer clients sending extra options still work. Every model a
server parses from a caller derives from :class:`RequestSchema`: its strings must be valid
Unicode, so a lone surrogate is a 400 naming the field, not a 500 when the text is encoded.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

# torch.Generator takes a 64-bit seed; OpenAI documents seed as an integer without a range.
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]

# Why a sequence ended, as the OpenAI API reports it.
FinishReason = Literal["stop", "length"]
# What a worker may also report: "abort", the sequence was cancelled or the engine shut down.
WorkerFinishReason = Literal[FinishReason, "abort"]
WORKER_FINISH_REASONS: tuple[str, ...] = get_args(WorkerFinishReason)


class Schema(BaseModel):
    """Base of every wire model: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")


# JSON's "\\ud800" escape (or UTF-8-encoded surrogates, which json.loads lets through) gives a
# str that cannot be encoded: the worker's tokenizer, the forwarded request and the echoed
# response would all fail on it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _strings(value: Any) -> list[str]:
    """The strings of a field value: itself, or the items / keys and values of a container."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in value if isinstance(item, str)]
    if isinstance(value, dict):
        return [item for pair in value.items() for item in pair if isinstance(item, str)]
    return []


class RequestSchema(Schema):
    """Base of every model parsed from a caller (nested parts included): each string field,
    or string in a list / dict field, must be valid Unicode (no lone UTF-16 surrogate)."""

    @field_validator("*", mode="after")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        for text in _strings(value):
            if not text.isascii() and (match := _SURROGATE.search(text)):
                raise PydanticCustomError(
                    "invalid_unicode",
                    "not valid Unicode: lone surrogate U+{code} at character {index}; "
                    "send UTF-8 text",
                    {"code": f"{ord(match.group()):04X}", "index": match.start()},
                )
        return value


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class ErrorInfo(Schema):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


class ErrorResponse(Schema):
    error: ErrorInfo


class TextPart(RequestSchema):
    type: Literal["text"]
    text: str


class ChatMessage(RequestSchema):
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


class SamplingParams(RequestSchema):
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
