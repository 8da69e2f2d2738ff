"""The web demo's callbacks, driven with a fake client (no server, no browser)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import gradio as gr
import pytest

from serve.errors import NoWorkerError, ServeError
from serve.web.chat import (
    WebLimits,
    add_user_turn,
    export_conversation,
    model_messages,
    pop_last_reply,
    refresh_models,
    sampling_params,
    stream_reply,
)

LIMITS = WebLimits(max_input_chars=50)
SAMPLING = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 32}


class FakeClient:
    """Streams a scripted reply piece by piece and records every request and close."""

    def __init__(self, pieces=("Hel", "lo", "!"), models=("tiny",), error=None, hang=False):
        self.pieces, self.models, self.error, self.hang = list(pieces), list(models), error, hang
        self.requests: list[tuple[str, list[dict[str, str]], dict]] = []
        self.closed = 0

    async def list_models(self) -> list[str]:
        if isinstance(self.error, Exception):
            raise self.error
        return self.models

    async def stream_chat(self, model, messages, **sampling) -> AsyncIterator[str]:
        self.requests.append((model, messages, sampling))
        try:
            for piece in self.pieces:
                await asyncio.sleep(0)
                yield piece
            if self.error is not None:
                raise self.error
            while self.hang:
                await asyncio.sleep(0.01)
        finally:
            self.closed += 1


def collect(client, history, model="tiny", system=""):
    async def run():
        return [u async for u in stream_reply(client, model, system, SAMPLING, history)]

    return asyncio.run(run())


def bot_text(display: list[dict]) -> str:
    return display[-1]["content"][0]["text"]


def test_streaming_yields_growing_reply_and_sends_whole_history():
    client = FakeClient()
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hey"},
        {"role": "user", "content": "again"},
    ]
    updates = collect(client, history, system="Be brief.")
    replies = [turns[-1]["content"] for turns, _ in updates]
    assert replies == ["", "Hel", "Hello", "Hello!"]
    assert bot_text(updates[-1][1]) == "Hello!"
    model, messages, sampling = client.requests[0]
    assert model == "tiny" and sampling == SAMPLING
    assert messages == [{"role": "system", "content": "Be brief."}, *history]
    assert history[-1]["role"] == "user", "the input history must not be mutated"


def test_add_user_turn_clears_box_and_appends_user_message():
    box, history, display = add_user_turn("What is 2+2?", "tiny", [], LIMITS)
    assert box == "" and history == [{"role": "user", "content": "What is 2+2?"}]
    assert display[0]["role"] == "user"


@pytest.mark.parametrize(
    ("text", "model", "message"),
    [
        ("x" * 51, "tiny", "51 characters; the limit is 50"),
        ("   ", "tiny", "Type a message"),
        ("hello", None, "No model is being served"),
    ],
)
def test_invalid_input_is_refused_with_a_clear_message(text, model, message):
    with pytest.raises(gr.Error, match=message):
        add_user_turn(text, model, [], LIMITS)


def test_no_worker_error_becomes_a_message_in_the_reply():
    client = FakeClient(pieces=[], error=NoWorkerError("no worker serves 'tiny'"))
    with pytest.warns(UserWarning, match="No worker is serving"):  # gr.Warning: a toast
        history, display = collect(client, [{"role": "user", "content": "hi"}])[-1]
    assert "No worker is serving 'tiny'" in history[-1]["error"]
    assert "No worker is serving" in bot_text(display)


@pytest.mark.parametrize(
    "error", [ServeError("worker crashed"), aiohttp.ServerDisconnectedError("connection lost")]
)
def test_server_failure_mid_stream_keeps_partial_text_and_shows_error(error):
    client = FakeClient(pieces=["par", "tial"], error=error)
    with pytest.warns(UserWarning):
        history, display = collect(client, [{"role": "user", "content": "hi"}])[-1]
    assert history[-1]["content"] == "partial" and history[-1]["error"]
    assert bot_text(display).startswith("partial\n\n⚠ **")
    assert client.closed == 1


def test_failed_exchange_is_not_sent_to_the_model_nor_exported(tmp_path):
    failed = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "", "error": "no worker"},
    ]
    assert model_messages("", failed) == []
    _, history, _ = add_user_turn("second", "tiny", failed, LIMITS)
    assert history == [{"role": "user", "content": "second"}]
    with pytest.raises(gr.Error, match="Nothing to export"):
        export_conversation("", failed, tmp_path)


def test_stop_cancels_the_stream_and_closes_the_client_iterator():
    client = FakeClient(pieces=["Hel", "lo"], hang=True)
    history = [{"role": "user", "content": "hi"}]
    seen: list[str] = []

    async def run():
        async def consume():
            async for turns, _ in stream_reply(client, "tiny", "", SAMPLING, history):
                seen.append(turns[-1]["content"])

        task = asyncio.create_task(consume())
        while seen[-1:] != ["Hello"]:
            await asyncio.sleep(0.01)
        task.cancel()  # what Gradio does when Stop is clicked
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert seen[-1] == "Hello"
    assert client.closed == 1


def test_regenerate_drops_last_reply_and_streams_a_new_one():
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "old"}]
    kept, display = pop_last_reply(history)
    assert kept == history[:1] and len(display) == 1
    client = FakeClient(pieces=["new"])
    turns, _ = collect(client, kept)[-1]
    assert turns == [*history[:1], {"role": "assistant", "content": "new"}]
    assert client.requests[0][1] == history[:1]
    with pytest.raises(gr.Error, match="Nothing to regenerate"):
        pop_last_reply([])


def test_export_writes_sharegpt_json_with_system_turn(tmp_path):
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    path = export_conversation("Be kind.", history, tmp_path)
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    assert set(record) == {"id", "conversations"} and record["id"].startswith("web-")
    assert record["conversations"] == [
        {"from": "system", "value": "Be kind."},
        {"from": "human", "value": "hi"},
        {"from": "gpt", "value": "hello"},
    ]


def test_refresh_lists_models_and_reports_missing_workers():
    update, status = asyncio.run(refresh_models(FakeClient(models=["b", "a"]), "b"))
    assert update["choices"] == ["a", "b"] and update["value"] == "b"
    assert status.startswith("2 models")
    update, status = asyncio.run(refresh_models(FakeClient(models=[]), None))
    assert update["choices"] == [] and "No model is being served" in status
    down = FakeClient(error=ServeError("controller at http://x is unreachable"))
    with pytest.warns(UserWarning, match="unreachable"):
        update, status = asyncio.run(refresh_models(down, "a"))
    assert update["value"] is None and "unreachable" in status


def test_sampling_sliders_are_clamped_to_worker_limits():
    assert sampling_params(3.0, 0.0, 10_000, WebLimits(max_tokens=512)) == {
        "temperature": 2.0,
        "top_p": 0.01,
        "max_tokens": 512,
    }


def test_model_output_html_is_displayed_as_text_not_markup():
    client = FakeClient(pieces=["<script>alert(1)</script>", " <img src=x onerror=alert(1)>"])
    history, display = collect(client, [{"role": "user", "content": "hi"}])[-1]
    assert history[-1]["content"].startswith("<script>"), "history keeps the raw text"
    shown = bot_text(display)
    assert "<script" not in shown and "<img" not in shown
    assert "&lt;script>alert(1)&lt;/script>" in shown


def test_closing_the_reply_generator_closes_the_client_stream_at_once():
    client = FakeClient(pieces=["Hel", "lo"], hang=True)

    async def run() -> int:
        updates = stream_reply(client, "tiny", "", SAMPLING, [{"role": "user", "content": "hi"}])
        async for turns, _ in updates:
            if turns[-1]["content"] == "Hel":
                break
        await updates.aclose()
        return client.closed  # read before asyncio.run finalizes leftover generators

    assert asyncio.run(run()) == 1
