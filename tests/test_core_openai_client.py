"""The core OpenAI-compatible client against a loopback stand-in server: which failures are
retried and how long it waits (``Retry-After`` honoured, capped), which fail at once, what the
error says, and the usage it sums over both routes."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fastchat_lite.errors import ApiError, FastChatLiteError
from fastchat_lite.openai_client import Completion, OpenAIClient, api_base
from fastchat_lite.processes import free_port

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


class StandIn:
    """Answers requests from a script: an int is that HTTP status with an OpenAI error body
    (``(status, retry_after)`` adds the header); anything else, or an empty script, is a 200.
    Records the route, the body and the arrival time of every request."""

    def __init__(self) -> None:
        self.script: deque[Any] = deque()
        self.requests: list[tuple[str, dict[str, Any], float]] = []

    def reset(self, *script: Any) -> None:
        self.script = deque(script)
        self.requests = []

    def app(self) -> Any:
        from fastapi.responses import JSONResponse

        app = fastapi.FastAPI()

        async def answer(route: str, request: fastapi.Request) -> JSONResponse:
            body = await request.json()
            self.requests.append((route, body, time.monotonic()))
            step = self.script.popleft() if self.script else 200
            status, retry_after = step if isinstance(step, tuple) else (step, None)
            if status != 200:
                headers = {"Retry-After": retry_after} if retry_after is not None else {}
                error = {"message": f"stand-in says {status}", "type": "test"}
                return JSONResponse({"error": error}, status, headers=headers)
            n = len(self.requests)
            if route == "chat":
                choice = {"message": {"role": "assistant", "content": f"chat reply {n}"}}
            else:
                choice = {"text": f"completion reply {n}"}
            choice.update(index=0, finish_reason="stop")
            usage = {"prompt_tokens": 10 * n, "completion_tokens": n, "total_tokens": 11 * n}
            return JSONResponse({"id": "x", "choices": [choice], "usage": usage})

        @app.post("/v1/chat/completions")
        async def chat(request: fastapi.Request) -> JSONResponse:
            return await answer("chat", request)

        @app.post("/v1/completions")
        async def completions(request: fastapi.Request) -> JSONResponse:
            return await answer("completion", request)

        return app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[StandIn, str]]:
    from judge_fixtures import serve_in_thread

    standin = StandIn()
    with serve_in_thread(standin.app(), free_port()) as url:
        yield standin, url


def run(url: str, ask: Any, **options: Any) -> tuple[Any, OpenAIClient]:
    """``await ask(client)`` with a fresh client for model ``m`` at ``url``."""

    async def main() -> Any:
        async with OpenAIClient(url, "m", **options) as client:
            return await ask(client), client

    return asyncio.run(main())


def say(client: OpenAIClient, text: str = "hi") -> Any:
    return client.chat([{"role": "user", "content": text}], max_tokens=8)


def test_429_with_retry_after_is_retried_after_the_servers_wait(server):
    standin, url = server
    standin.reset((429, "1"))
    reply, client = run(url, say, backoff=0.0)  # no backoff of our own: only the server's wait
    assert reply.text == "chat reply 2" and client.usage.retries == 1
    (_, _, first), (_, _, second) = standin.requests
    assert second - first >= 0.9


def test_a_long_retry_after_is_capped_at_max_backoff(server):
    standin, url = server
    standin.reset((503, "3600"))
    started = time.monotonic()
    reply, _ = run(url, say, max_backoff=0.2)
    assert reply.text == "chat reply 2" and time.monotonic() - started < 5


def test_5xx_is_retried_then_fails_naming_the_url_and_the_servers_error(server):
    standin, url = server
    standin.reset(500, 502, 503)
    with pytest.raises(ApiError) as caught:
        run(url, say, max_retries=2, backoff=0.01)
    message = str(caught.value)
    assert f"{url}/chat/completions (model m)" in message
    assert "still failing after 2 retries" in message
    assert "HTTP 503: stand-in says 503" in message
    assert caught.value.status == 503 and isinstance(caught.value, FastChatLiteError)
    assert len(standin.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_4xx_is_not_retried(server, status):
    standin, url = server
    standin.reset(status, 200)
    with pytest.raises(ApiError, match=f"/v1/completions \\(model m\\): HTTP {status}: stand-in"):
        run(url, lambda client: client.complete("once upon"), backoff=0.0)
    assert len(standin.requests) == 1 and standin.requests[0][0] == "completion"


def test_both_routes_send_the_model_and_sampling_and_usage_is_summed(server):
    standin, url = server
    standin.reset(429)

    async def both(client: OpenAIClient) -> list[Completion]:
        chat = await client.chat([{"role": "user", "content": "hi"}], temperature=0.0)
        text = await client.complete("once upon", max_tokens=4, stop=["\n"])
        return [chat, text]

    replies, client = run(url, both, backoff=0.0)
    assert replies == [
        Completion("chat reply 2", "stop", 20, 2),
        Completion("completion reply 3", "stop", 30, 3),
    ]
    assert (client.usage.calls, client.usage.retries) == (2, 1)
    assert (client.usage.prompt_tokens, client.usage.completion_tokens) == (50, 5)
    assert [(route, body) for route, body, _ in standin.requests[1:]] == [
        ("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}),
        ("completion", {"model": "m", "prompt": "once upon", "max_tokens": 4, "stop": ["\n"]}),
    ]


def test_a_dropped_connection_is_retried():
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        if len(attempts) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"choices": [{"text": "ok"}]})

    transport = httpx.MockTransport(handler)
    reply, client = run("http://t", lambda c: c.complete("p"), backoff=0.0, transport=transport)
    assert reply == Completion("ok", None, 0, 0)
    assert attempts == ["/v1/completions", "/v1/completions"] and client.usage.retries == 1


def test_a_reply_without_choices_is_an_error_naming_the_field():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"choices": []}))
    with pytest.raises(ApiError, match=r"http://t/v1/chat/completions .*choices\[0\]\.message"):
        run("http://t", say, transport=transport)


@pytest.mark.parametrize(
    "url", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"]
)
def test_api_base_adds_v1_once(url):
    assert api_base(url) == "http://h:8000/v1"
