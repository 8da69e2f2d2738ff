"""One message type for the three conversation shapes users bring.

ShareGPT turns (``{"from": "human"|"gpt"|"system", "value"}``) and OpenAI messages
(``{"role": "user"|"assistant"|"system", "content"}``, content a string or a list of text
parts) both become :class:`Message` objects, so templates and masking deal with one shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastchat_lite.errors import ConversationError

ROLE_ALIASES: dict[str, str] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}
SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            else:
                raise ConversationError(f"{where}: only text content parts are supported")
        return "".join(parts)
    raise ConversationError(f"{where}: content must be a string, got {type(content).__name__}")


def to_message(turn: Message | Mapping[str, Any], index: int = 0) -> Message:
    """Convert one ShareGPT turn or OpenAI message; raises :class:`ConversationError`."""
    if isinstance(turn, Message):
        return turn
    if not isinstance(turn, Mapping):
        raise ConversationError(f"turn {index}: expected an object, got {type(turn).__name__}")
    if "role" in turn:
        raw_role, content = turn.get("role"), turn.get("content")
    elif "from" in turn:
        raw_role, content = turn.get("from"), turn.get("value")
    else:
        raise ConversationError(f"turn {index}: needs 'from'/'value' or 'role'/'content'")
    role = ROLE_ALIASES.get(str(raw_role).lower()) if isinstance(raw_role, str) else None
    if role is None:
        raise ConversationError(f"turn {index}: unknown role {raw_role!r}")
    if content is None:
        raise ConversationError(f"turn {index}: missing content")
    return Message(role, _content_text(content, f"turn {index}"))


def to_messages(
    conversation: Iterable[Message | Mapping[str, Any]] | Mapping[str, Any],
) -> list[Message]:
    """Accept a list of turns/messages, or a record with ``conversations`` or ``messages``."""
    if isinstance(conversation, Mapping):
        turns = conversation.get("conversations", conversation.get("messages"))
        if turns is None:
            raise ConversationError("record has neither 'conversations' nor 'messages'")
        conversation = turns
    if isinstance(conversation, (str, bytes)):
        raise ConversationError("a conversation must be a list of turns, not a string")
    return [to_message(turn, i) for i, turn in enumerate(conversation)]


def to_sharegpt(messages: Iterable[Message]) -> list[dict[str, str]]:
    """Messages as ShareGPT turns, the on-disk format of every data_prep output."""
    return [{"from": SHAREGPT_ROLE[m.role], "value": m.content} for m in messages]


def to_openai(messages: Iterable[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]
