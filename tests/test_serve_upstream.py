"""`serve worker --upstream URL`: our controller, API and clients on top of another
OpenAI-compatible server. In process against fake upstreams (SSE parsing, error mapping,
discovery), then end to end: `serve local --upstream` in front of a real fastchat-lite stack
serving the tiny model, driven by the official openai client.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from test_serve_local_and_chat import children_of
from test_serve_stack import API_KEY, chat, running_stack, stop, wait_for

from fastchat_lite.processes import free_port
from serve.config import WorkerConfig
from serve.engine.upstream import (
    UpstreamEngine,
    UpstreamError,
    connect_upstream,
    discover,
    request_body,
)
from serve.errors import ContextLengthError, ServeError, WorkerFailedError
from serve.schemas import ChatMessage, SamplingParams

# ---------------------------------------------------------------- in process, fake upstreams


def sse(*events: dict | str) -> bytes:
    """An SSE body: dicts as JSON data events, ":..." as comment lines, other strings as data."""

    def event(e: dict | str) -> str:
        if isinstance(e, str) and e.startswith(":"):
            return f"{e}\n\n"
        return f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n"

    return "".join(map(event, events)).encode()


def engine_for(handler) -> UpstreamEngine:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://up/v1")
    return UpstreamEngine("http://up/v1", "m", context_length=64, http=http)


def generate(engine: UpstreamEngine, source, params: SamplingParams | None = None) -> list:
    async def collect() -> list:
        return [out async for out in engine.generate_text(source, params or SamplingParams())]

    return asyncio.run(collect())


USER = [ChatMessage(role="user", content="hi")]


def test_sampling_parameters_go_upstream_under_openai_names_and_extensions_only_when_set():
    params = SamplingParams(
        temperature=0.5, top_p=0.9, max_tokens=7, stop=["\n"], seed=3, top_k=5, ignore_eos=True
    )
    path, body = request_body("m", USER, params)
    assert path == "/chat/completions"
    assert body == {
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
        "stream_options": {"include_usage": True}, "temperature": 0.5, "top_p": 0.9,
        "max_tokens": 7, "stop": ["\n"], "seed": 3, "top_k": 5, "ignore_eos": True,
    }  # fmt: skip
    path, body = request_body("m", "once upon", SamplingParams())
    assert path == "/completions" and body["prompt"] == "once upon"
    assert not {"top_k", "repetition_penalty", "ignore_eos", "stop", "max_tokens"} & set(body)


def test_a_streamed_chat_becomes_text_outputs_then_the_finish_with_the_upstreams_usage():
    sent: list[dict] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        delta = [{"index": 0, "delta": {"role": "assistant", "content": ""}}]
        body = sse(
            {"choices": delta},
            {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
            ": a comment line",
            {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "length"}]},
            {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}},
            "[DONE]",
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    engine = engine_for(upstream)
    outs = generate(engine, USER)
    assert [(o.text, o.finish_reason) for o in outs] == [
        ("Hel", None),
        ("lo", None),
        ("", "length"),
    ]
    assert (outs[-1].prompt_tokens, outs[-1].completion_tokens) == (9, 2)
    assert sent[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert (engine.running, engine.aborted) == (0, 0)


@pytest.mark.parametrize(
    ("status", "body", "kind", "expected_status", "code"),
    [
        (400, {"error": {"message": "bad top_p", "type": "invalid_request_error",
                         "param": "top_p", "code": None}}, ServeError, 400, None),
        (400, {"object": "error", "message": "This model's maximum context length is 512 "
               "tokens. However, you requested 900 tokens", "code": 400},
         ContextLengthError, 400, "context_length_exceeded"),
        (404, {"detail": "Not Found"}, ServeError, 404, None),
        (401, {"error": {"message": "bad key"}}, ServeError, 502, "upstream_auth_failed"),
        (500, "Internal Server Error", WorkerFailedError, 503, "worker_failed"),
    ],
)  # fmt: skip
def test_upstream_errors_keep_their_meaning(status, body, kind, expected_status, code):
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    engine = engine_for(lambda _request: httpx.Response(status, content=content))
    with pytest.raises(kind) as info:
        generate(engine, USER)
    assert info.value.status_code == expected_status
    assert info.value.code == code or (code is None and status == 404)
    if status in (400, 404):
        assert (body.get("error") or body).get("message", "Not Found") in info.value.message


def test_an_unreachable_upstream_or_a_cut_stream_is_a_503_worker_failed():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def cut(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=sse({"choices": [{"index": 0, "text": "a"}]}))

    def error_event(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=sse({"error": {"message": "worker died"}}, "[DONE]"))

    for handler, words in [(refuse, "unreachable"), (cut, "unfinished"), (error_event, "died")]:
        with pytest.raises(WorkerFailedError) as info:
            generate(engine_for(handler), "a prompt")
        assert info.value.status_code == 503 and words in info.value.message


def test_discovery_takes_the_model_and_its_max_model_len_and_otherwise_asks_for_the_flag():
    cards = {"data": [{"id": "a"}, {"id": "b", "max_model_len": 4096}]}

    def get(url: str, **_kwargs) -> httpx.Response:
        assert url == "http://up/v1/models"
        return httpx.Response(200, json=cards)

    assert discover("http://up/v1/", None, None, get=get) == ("a", None)
    assert discover("http://up/v1", "b", None, get=get) == ("b", 4096)
    with pytest.raises(UpstreamError, match="not 'c'"):
        discover("http://up/v1", "c", None, get=get, timeout=0)
    config = WorkerConfig(upstream="http://up/v1")
    with pytest.raises(UpstreamError, match="--context-length"):
        connect_upstream(config, get=get)
    assert connect_upstream(WorkerConfig(upstream="http://up/v1", context_length=99), get=get)
    forbidden = lambda url, **_: httpx.Response(401, json={})  # noqa: E731
    with pytest.raises(UpstreamError, match="--upstream-api-key"):
        discover("http://up/v1", None, "wrong", get=forbidden)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def upstream(tiny_model_dir):
    yield from running_stack(tiny_model_dir)


class Front:
    """`serve local --upstream` in front of the upstream stack's API, as model "front"."""

    def __init__(self, upstream_api: str, log_path: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fastchat_lite.cli", "serve", "local", "--upstream",
                 upstream_api, "--upstream-model", "tiny", "--model-name", "front",
                 "--port", str(self.port), "--no-web", "--api-key", "front-key", *flags],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
            )  # fmt: skip

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key="front-key", max_retries=0, timeout=30)


def running_front(front: Front, timeout: float = 90) -> Iterator[Front]:
    """``front`` once it lists its model, stopped afterwards."""
    try:
        wait_for(
            lambda: (
                front.proc.poll() is None
                and [m.id for m in front.client().models.list().data] == ["front"]
            ),
            timeout,
            f"the front stack ({front.log_path})",
        )
        assert front.proc.poll() is None, front.log_path.read_text()
        yield front
    finally:
        if front.proc.poll() is None:
            os.killpg(front.proc.pid, signal.SIGTERM)
            front.proc.wait(20)


@pytest.fixture(scope="module")
def front(upstream, tmp_path_factory):
    log = tmp_path_factory.mktemp("front") / "log.txt"
    # Our API reports no max_model_len, so the worker is told the upstream's context.
    flags = ("--upstream-api-key", API_KEY, "--context-length", "256")
    yield from running_front(Front(upstream.api_url, log, *flags))


@pytest.mark.slow
def test_chat_through_the_front_matches_the_upstream_text_and_usage(upstream, front):
    direct = chat(upstream.client(), max_tokens=12)
    via = chat(front.client(), model="front", max_tokens=12)
    assert via.choices[0].message.content == direct.choices[0].message.content
    assert via.choices[0].finish_reason == direct.choices[0].finish_reason == "length"
    assert via.usage.prompt_tokens == direct.usage.prompt_tokens
    assert via.usage.completion_tokens == direct.usage.completion_tokens == 12
    assert via.model == "front"


@pytest.mark.slow
def test_streaming_through_the_front_gives_the_same_text_and_the_upstream_usage(upstream, front):
    full = chat(upstream.client(), max_tokens=12).choices[0].message.content
    chunks = list(
        chat(
            front.client(), model="front", max_tokens=12, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12


@pytest.mark.slow
def test_stop_strings_and_completions_are_forwarded(upstream, front):
    direct = upstream.client().completions.create(
        model="tiny", prompt="The quick brown fox", max_tokens=8, temperature=0
    )
    text = direct.choices[0].text
    via = front.client().completions.create(
        model="front", prompt="The quick brown fox", max_tokens=8, temperature=0
    )
    assert via.choices[0].text == text and via.usage.completion_tokens == 8
    stopped = front.client().completions.create(
        model="front", prompt="The quick brown fox", max_tokens=8, temperature=0, stop=[text[2:4]]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == text[: text.index(text[2:4])]


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_refusals_reach_the_client_as_the_same_4xx(front, stream):
    client = front.client()
    too_long = [{"role": "user", "content": "hi " * 400}]  # the upstream's context is 256
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, model="front", messages=too_long, stream=stream)
    assert info.value.body["code"] == "context_length_exceeded"
    assert "maximum context length is 256" in info.value.body["message"]
    bad_order = [{"role": "assistant", "content": "hi"}]  # templated, and refused, upstream
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, model="front", messages=bad_order, stream=stream)
    assert info.value.body["code"] == "invalid_messages"


@pytest.mark.slow
def test_the_upstream_key_is_not_on_any_command_line(front):
    for pid in children_of(front.proc.pid):
        assert API_KEY.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.slow
def test_a_client_disconnect_cancels_the_upstream_request(upstream, front):
    aborted = upstream.worker_status()["aborted"]
    body = {
        "model": "front", "prompt": "The quick", "max_tokens": 240, "ignore_eos": True,
        "temperature": 0, "stream": True,
    }  # fmt: skip
    with httpx.stream(
        "POST", f"{front.url}/completions", json=body,
        headers={"Authorization": "Bearer front-key"}, timeout=30,
    ) as response:  # fmt: skip
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert upstream.worker_status()["running"] == 1

    def cancelled_upstream() -> bool:
        status = upstream.worker_status()
        return status["aborted"] == aborted + 1 and status["queue_length"] == 0

    wait_for(cancelled_upstream, 5, "the upstream sequence to be cancelled")


@pytest.mark.slow
def test_an_upstream_that_goes_down_is_a_fast_503(upstream, front):
    stop(upstream.procs["api"])  # the last test of the module: the upstream stays down
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        chat(front.client(), model="front")
    assert info.value.status_code == 503
    assert info.value.body["code"] == "worker_failed"
    assert "unreachable" in info.value.body["message"]
    assert time.monotonic() - started < 3
