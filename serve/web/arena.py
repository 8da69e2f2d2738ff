"""Side-by-side mode: one prompt, two models streaming at once, and a vote saved to JSONL.

This is the Vicuna-vs-Alpaca comparison of the original demo. Each side reuses the single
chat's callbacks (:mod:`serve.web.chat`); this module only pairs them and records votes.
A session's pair state ``{"models": [a, b], "voted": bool}`` pins the models a conversation
started with, so a vote is never credited to a model that did not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr

from fastchat_lite.messages import to_messages, to_sharegpt
from serve.web.chat import (
    ChatClient,
    History,
    WebLimits,
    check_text,
    model_messages,
    refresh_models,
    stream_reply,
)
from serve.web.render import display_history

VOTES = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both are bad"}
_VOTE_LOCK = threading.Lock()  # one process appends one line at a time


async def refresh_pair(
    client: ChatClient, current_a: str | None, current_b: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Dropdown updates for both sides; side B defaults to a model other than side A's."""
    update_a, _ = await refresh_models(client, current_a)
    choices = update_a.get("choices") or []
    others = [m for m in choices if m != update_a.get("value")] or choices
    value_b = current_b if current_b in choices else (others[0] if others else None)
    return update_a, gr.update(choices=choices, value=value_b)


def check_pair_turn(
    text: str,
    model_a: str | None,
    model_b: str | None,
    history_a: History,
    history_b: History,
    pair: dict[str, Any],
    limits: WebLimits,
) -> None:
    """Raise :class:`gr.Error` saying what to fix; a model switch mid-conversation is refused."""
    if not model_a or not model_b:
        raise gr.Error("Pick a model for both side A and side B first.")
    check_text(text, limits)
    if (history_a or history_b) and pair.get("models") != [model_a, model_b]:
        raise gr.Error("Clear the conversation before switching models, so votes stay fair.")


def add_pair_turn(
    text: str,
    model_a: str | None,
    model_b: str | None,
    history_a: History,
    history_b: History,
    pair: dict[str, Any],
    limits: WebLimits,
) -> tuple[str, History, Any, History, Any, dict[str, Any]]:
    """Append the prompt to both sides and pin the two models for the votes."""
    check_pair_turn(text, model_a, model_b, history_a, history_b, pair, limits)
    sides = []
    for history in (history_a, history_b):
        kept = list(history)
        if kept and kept[-1].get("error") is not None:  # retry: replace the failed exchange
            kept = kept[:-2]
        sides.append([*kept, {"role": "user", "content": text}])
    new_pair = {"models": [model_a, model_b], "voted": False}
    a, b = sides
    return "", a, display_history(a), b, display_history(b), new_pair


async def stream_pair(
    client: ChatClient,
    pair: dict[str, Any],
    system: str | None,
    sampling: dict[str, float | int],
    history_a: History,
    history_b: History,
) -> AsyncIterator[tuple[History, Any, History, Any]]:
    """Both replies at once; each yield is (history_a, display_a, history_b, display_b)."""
    latest = [(history_a, display_history(history_a)), (history_b, display_history(history_b))]
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(side: int, model: str, history: History) -> None:
        try:
            replies = stream_reply(client, model, system, sampling, history)
            async with contextlib.aclosing(replies):
                async for update in replies:
                    await queue.put((side, update))
        finally:
            queue.put_nowait((side, None))  # always unblock the merger, even on error

    models = pair.get("models") or [None, None]
    tasks = [
        asyncio.create_task(pump(side, models[side], history))
        for side, history in enumerate((history_a, history_b))
    ]
    try:
        finished = 0
        while finished < len(tasks):
            side, update = await queue.get()
            if update is None:
                finished += 1
                continue
            latest[side] = update
            yield (*latest[0], *latest[1])
    finally:  # Stop / Clear cancel us: cancel both streams so both client iterators close
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def vote_record(
    vote: str, pair: dict[str, Any], system: str | None, history_a: History, history_b: History
) -> dict[str, Any]:
    """One JSONL line: the vote, both models and both conversations in ShareGPT turns."""
    model_a, model_b = pair["models"]
    return {
        "tstamp": round(time.time(), 3),
        "vote": vote,
        "model_a": model_a,
        "model_b": model_b,
        "conversation_a": to_sharegpt(to_messages(model_messages(system, history_a))),
        "conversation_b": to_sharegpt(to_messages(model_messages(system, history_b))),
    }


def record_vote(
    vote_file: str | Path | None,
    vote: str,
    pair: dict[str, Any],
    system: str | None,
    history_a: History,
    history_b: History,
) -> tuple[dict[str, Any], str]:
    """Append the vote to ``vote_file``; returns the new pair state and a status line."""
    if vote_file is None:
        raise gr.Error("Voting is off: start the demo with --vote-file votes.jsonl.")
    answered = [t for t in (*history_a, *history_b) if t["role"] == "assistant"]
    if not pair.get("models") or not answered:
        raise gr.Error("Send a prompt and let both models answer before voting.")
    if pair.get("voted"):
        raise gr.Error("You already voted on this answer: send another prompt to vote again.")
    line = json.dumps(vote_record(vote, pair, system, history_a, history_b), ensure_ascii=False)
    path = Path(vote_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An append-only log: one write of one whole line, so readers never see half a record.
    with _VOTE_LOCK, path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    model_a, model_b = pair["models"]
    return {**pair, "voted": True}, f"Vote saved: {VOTES[vote]} (A = {model_a}, B = {model_b})."
