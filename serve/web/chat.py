"""The web demo's behaviour, as plain functions of (inputs, history) -> outputs.

Gradio wiring lives in :mod:`serve.web.app`; everything here can be called by a test with a
fake client. A session's history is a list of turns ``{"role", "content"}`` holding the raw
text (what the model said), kept in a ``gr.State`` per browser session, never in a global.
A turn whose generation failed carries ``"error"``; that exchange (the user turn and the
failed reply) is shown but neither sent back to the model nor exported.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gradio as gr

from fastchat_lite.io import write_json
from fastchat_lite.messages import Message, to_messages, to_sharegpt
from serve.cluster.client import TRANSPORT_ERRORS
from serve.config import DEFAULT_TEMPERATURE, MAX_INPUT_CHARS
from serve.errors import NoWorkerError, ServeError
from serve.web.render import display_history

logger = logging.getLogger(__name__)

Turn = dict[str, Any]
History = list[Turn]


class ChatClient(Protocol):
    """What the demo needs from :class:`serve.cluster.client.ServeClient` (tests pass a fake)."""

    async def list_models(self) -> list[str]: ...

    def stream_chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        temperature: float = DEFAULT_TEMPERATURE,
        top_p: float = 1.0,
        max_tokens: int = 256,
    ) -> AsyncIterator[str]: ...


@dataclass(frozen=True)
class WebLimits:
    """Bounds a public page needs: a pasted novel must not reach the worker."""

    max_input_chars: int = MAX_INPUT_CHARS
    max_tokens: int = 2048


NO_MODEL_HINT = (
    "No model is being served: start a worker with `fastchat-lite serve worker --model DIR "
    "--controller URL`, then click ↻ to refresh the list."
)


def model_messages(system: str | None, history: Sequence[Turn]) -> list[dict[str, str]]:
    """The conversation the model sees: system prompt, then the exchanges that succeeded."""
    system = (system or "").strip()  # a textbox in a closed accordion may send None
    messages = [{"role": "system", "content": system}] if system else []
    for index, turn in enumerate(history):
        failed_reply = turn.get("error") is not None
        next_failed = index + 1 < len(history) and history[index + 1].get("error") is not None
        if failed_reply or (turn["role"] == "user" and next_failed):
            continue
        messages.append({"role": turn["role"], "content": turn["content"]})
    return messages


def validate_message(text: str, model: str | None, limits: WebLimits) -> None:
    """Raise :class:`gr.Error` saying what to fix (then nothing is appended)."""
    if not model:
        raise gr.Error(NO_MODEL_HINT)
    check_text(text, limits)


def check_text(text: str, limits: WebLimits) -> None:
    """The message rules both tabs share: not too long, not blank."""
    if len(text) > limits.max_input_chars:
        raise gr.Error(
            f"Your message is {len(text)} characters; the limit is {limits.max_input_chars}. "
            "Shorten it and send again."
        )
    if not text.strip():
        raise gr.Error("Type a message first.")


def add_user_turn(
    text: str, model: str | None, history: History, limits: WebLimits
) -> tuple[str, History, list[dict[str, Any]]]:
    """Append the user's message (clears the textbox); drops a trailing failed exchange."""
    validate_message(text, model, limits)
    kept = list(history)
    if kept and kept[-1].get("error") is not None:  # retrying after an error: replace it
        kept = kept[:-2] if len(kept) >= 2 and kept[-2]["role"] == "user" else kept[:-1]
    kept.append({"role": "user", "content": text})
    return "", kept, display_history(kept)


def check_can_regenerate(history: History) -> None:
    if not history or history[-1]["role"] != "assistant":
        raise gr.Error("Nothing to regenerate yet: send a message first.")


def pop_last_reply(history: History) -> tuple[History, list[dict[str, Any]]]:
    """Regenerate, step one: drop the last assistant reply so it can be generated again."""
    check_can_regenerate(history)
    kept = list(history[:-1])
    return kept, display_history(kept)


async def stream_reply(
    client: ChatClient,
    model: str | None,
    system: str | None,
    sampling: dict[str, float | int],
    history: History,
) -> AsyncIterator[tuple[History, list[dict[str, Any]]]]:
    """Stream the assistant's reply to the last user turn, yielding the growing history.

    Errors end the stream with the message shown in the reply (and a toast), never a hang.
    Cancelling the consumer (the Stop button) closes the client's stream, keeping the text
    received so far as the reply.
    """
    if not history or history[-1]["role"] != "user":
        return
    messages = model_messages(system, history)
    reply: Turn = {"role": "assistant", "content": ""}
    history = [*history, reply]
    yield history, display_history(history)
    if not model:
        error: str | None = NO_MODEL_HINT
    else:
        error = None
        stream = client.stream_chat(model, messages, **sampling)  # type: ignore[arg-type]
        try:
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for delta in stream:
                    reply = {"role": "assistant", "content": reply["content"] + delta}
                    history = [*history[:-1], reply]
                    yield history, display_history(history)
        except NoWorkerError as exc:
            error = f"No worker is serving {model!r} right now: {exc}"
        except ServeError as exc:
            error = f"The model server failed: {exc}"
        except TRANSPORT_ERRORS as exc:  # the client should wrap these; keep the page alive anyway
            error = f"Cannot reach the model server: {exc}"
    if error is not None:
        logger.warning("web demo: %s", error)
        gr.Warning(error)
        history = [*history[:-1], {**reply, "error": error}]
        yield history, display_history(history)


def sampling_params(temperature: float, top_p: float, max_tokens: float, limits: WebLimits):
    """Slider values as the client's keyword arguments, clamped to what the worker accepts."""
    return {
        "temperature": min(max(float(temperature), 0.0), 2.0),
        "top_p": min(max(float(top_p), 0.01), 1.0),
        "max_tokens": min(max(int(max_tokens), 1), limits.max_tokens),
    }


def conversation_record(system: str | None, history: Sequence[Turn]) -> dict[str, Any]:
    """The session as one ShareGPT record, the format every data_prep output uses."""
    messages: list[Message] = to_messages(model_messages(system, history))
    return {"id": f"web-{uuid.uuid4().hex[:12]}", "conversations": to_sharegpt(messages)}


def export_conversation(
    system: str | None, history: Sequence[Turn], out_dir: Path | None = None
) -> str:
    """Write the conversation to a JSON file and return its path (for a download link)."""
    if not model_messages("", history):
        raise gr.Error("Nothing to export yet: the conversation is empty.")
    record = conversation_record(system, history)
    directory = out_dir or Path(tempfile.mkdtemp(prefix="fastchat-lite-export-"))
    path = directory / f"conversation-{record['id']}.json"
    write_json(path, record)
    return str(path)


async def refresh_models(client: ChatClient, current: str | None) -> tuple[Any, str]:
    """New dropdown choices (keeping the current pick if still served) and a status line."""
    try:
        models = sorted(await client.list_models())
    except ServeError as exc:
        status = f"⚠ Cannot list models: {exc}"
        gr.Warning(status)
        return gr.update(choices=[], value=None), status
    except TRANSPORT_ERRORS as exc:
        status = f"⚠ Cannot reach the controller: {exc}"
        gr.Warning(status)
        return gr.update(choices=[], value=None), status
    if not models:
        return gr.update(choices=[], value=None), f"⚠ {NO_MODEL_HINT}"
    value = current if current in models else models[0]
    plural = "s" if len(models) != 1 else ""
    return gr.update(choices=models, value=value), f"{len(models)} model{plural} available."
