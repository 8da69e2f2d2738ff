"""One request must not hurt the others: body caps (413), prompts refused before tokenizing,
tokenizing off the worker's event loop, invalid Unicode as a 400 on a connection that stays
usable, unsupported OpenAI parameters refused by name, /metrics bounded, restarts with backoff.

In-process tests use fake engines and tokenizers; the rest share one real stack
(:func:`test_serve_stack.running_stack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest
from fake_http import fake_server, json_reply
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_serve_stack import API_KEY, HI, SECRET, chat, running_stack

from serve.cluster.client import ServeClient
from serve.cluster.protocol import GenerateRequest
from serve.cluster.worker import WorkerService
from serve.cluster.worker import create_app as create_worker_app
from serve.config import ApiConfig, ControllerConfig, WorkerConfig
from serve.engine.base import EngineOutput
from serve.engine.prompting import PromptBuilder
from serve.error_handlers import install_error_handlers
from serve.errors import ContextLengthError
from serve.local import Supervisor
from serve.openai.app import create_app as create_api_app

# ---------------------------------------------------------------- fakes


class FakeEngine:
    """Satisfies serve.engine.base.Engine: a 64-token context, one "ok" per request."""

    context_length = 64
    max_batch_size = 1
    running = waiting = aborted = 0

    def max_new_tokens(self, prompt_len: int, requested: int | None) -> int:
        if prompt_len >= self.context_length:
            raise ContextLengthError("too long")
        return requested or 4

    async def generate(self, prompt_ids, params, interval=None):
        yield EngineOutput("ok", len(prompt_ids), 1, "stop")

    def close(self) -> None:
        pass


class FakeTokenizer:
    """Longest token: 4 characters; one token per 4 characters; counts (and can slow) calls."""

    eos_token_id = 0

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    def get_vocab(self) -> dict[str, int]:
        return {"a": 1, "ab": 2, "abcd": 3}

    def _ids(self, text: str) -> list[int]:
        self.calls += 1
        time.sleep(self.delay)  # a long prompt's tokenizing, holding whichever thread runs it
        return [3] * (len(text) // 4 + 1)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self._ids(text)}

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True):
        return self._ids("".join(m["content"] for m in messages))


def fake_service(tokenizer: FakeTokenizer) -> WorkerService:
    return WorkerService(FakeEngine(), PromptBuilder(tokenizer, None), ["m"])


@contextlib.contextmanager
def api_app() -> Iterator[FastAPI]:
    """The API app over a fake controller that lists model "m"."""
    with fake_server(lambda _seen: json_reply({"models": ["m"]})) as controller:
        yield create_api_app(ApiConfig(), client=ServeClient(controller.url))


# ---------------------------------------------------------------- in process


def test_a_prompt_that_cannot_fit_the_context_is_refused_before_it_is_tokenized():
    tokenizer = FakeTokenizer()
    service = fake_service(tokenizer)
    # 64 tokens of at most 4 characters: 256 characters cannot fit, whatever the tokenizer says
    too_long = [
        GenerateRequest(prompt="x" * 256),
        GenerateRequest(messages=[{"role": "user", "content": "x" * 5_000_000}]),
    ]
    for request in too_long:
        with pytest.raises(ContextLengthError) as info:
            service.prepare(request)
        assert info.value.param == ("prompt" if request.prompt else "messages")
        assert "64 tokens" in info.value.message
    assert tokenizer.calls == 0
    assert service.prepare(GenerateRequest(prompt="x" * 200)).ids
    assert tokenizer.calls == 1


def test_tokenizing_runs_off_the_event_loop_so_heartbeats_and_streams_keep_flowing():
    tokenizer = FakeTokenizer(delay=0.6)
    app = create_worker_app(WorkerConfig(), service=fake_service(tokenizer), register=False)

    async def scenario() -> tuple[httpx.Response, float]:
        gaps: list[float] = []

        async def tick() -> None:  # stands for the heartbeat task and other streams
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(time.perf_counter() - last)
                last = time.perf_counter()

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
            response = await client.post("/worker_generate_stream", json={"prompt": "hello"})
        ticker.cancel()
        return response, max(gaps)

    response, longest_gap = asyncio.run(scenario())
    assert response.status_code == 200 and tokenizer.calls == 1
    assert longest_gap < 0.3, f"the event loop stalled {longest_gap:.2f} s while tokenizing"


def test_controller_answers_413_to_a_body_over_its_cap_announced_or_streamed():
    from serve.cluster.controller import create_app

    client = TestClient(create_app(ControllerConfig(max_body_bytes=1000)))
    small = {"worker_address": "http://127.0.0.1:9", "model_names": ["m"]}
    assert client.post("/register_worker", json=small).status_code == 200
    big = json.dumps({**small, "model_names": ["m" * 2000]}).encode()

    def chunks():  # no Content-Length: the cap must hold while the body arrives
        yield big[:600]
        yield big[600:]

    announced = client.post("/register_worker", content=big)
    streamed = client.post("/register_worker", content=chunks())
    for response in (announced, streamed):
        assert response.status_code == 413
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
        assert "1000 bytes" in error["message"]


def test_metrics_count_unknown_paths_under_one_label_so_their_size_stays_bounded():
    async def scrape_after_random_paths() -> tuple[str, list[int]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            statuses = [(await client.get("/v1/models")).status_code]
            too_big = b"x" * (ApiConfig().max_body_bytes + 1)  # refused before routing
            refused = await client.post("/v1/chat/completions", content=too_big)
            statuses.append(refused.status_code)
            for _ in range(2000):
                statuses.append((await client.get(f"/{uuid.uuid4().hex}")).status_code)
            return (await client.get("/metrics")).text, statuses

    with api_app() as app:
        body, statuses = asyncio.run(scrape_after_random_paths())
    assert statuses == [200, 413] + [404] * 2000
    assert 'route="/v1/chat/completions",status="413"' in body
    assert len(body) < 12_000, f"/metrics grew to {len(body)} bytes"
    assert 'fastchat_lite_requests_total{route="unmatched",status="404"} 2000.0' in body
    assert 'route="/v1/models",status="200"' in body


def test_an_unexpected_error_is_an_openai_shaped_500_that_does_not_escape_the_app():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    # An exception escaping the app makes uvicorn drop the connection (TestClient re-raises it).
    response = TestClient(app).get("/boom")
    assert response.status_code == 500
    assert response.json()["error"] == {
        "message": "internal error: RuntimeError", "type": "server_error", "param": None,
        "code": None,
    }  # fmt: skip


class ExitedProcess:
    """A child that has already died, as ``kill -9`` leaves it."""

    pids = itertools.count(1000)

    def __init__(self) -> None:
        self.pid = next(self.pids)
        self.returncode = -9

    def poll(self) -> int:
        return self.returncode


def test_supervisor_restarts_with_growing_backoff_and_gives_up_after_5_restarts_in_10_min(
    capsys,
):
    now = [0.0]
    launched: list[ExitedProcess] = []

    def launch(_args: list[str]) -> ExitedProcess:
        launched.append(ExitedProcess())
        return launched[-1]

    commands = {"worker": ["serve", "worker"]}
    supervisor = Supervisor(commands, {}, clock=lambda: now[0], launch=launch)
    supervisor.start("worker")
    delays = []
    for _ in range(5):
        assert supervisor.check() is None  # notices the exit, schedules the restart
        delays.append(supervisor.due["worker"] - now[0])
        now[0] = supervisor.due["worker"]
        assert supervisor.check() is None  # restarts it
    reason = supervisor.check()
    assert delays == [1, 2, 4, 8, 16]
    assert len(launched) == 6
    assert reason is not None and "killed by SIGKILL" in reason and "giving up" in reason
    assert "killed by SIGKILL; restarting it in 1 s" in capsys.readouterr().err
    now[0] += 601  # restarts older than the window no longer count
    assert supervisor.check() is None
    assert supervisor.due["worker"] - now[0] == 1


# ---------------------------------------------------------------- real stack


@pytest.fixture(scope="module")
def stack(tiny_model_dir):
    yield from running_stack(tiny_model_dir)


AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {**AUTH, "Content-Type": "application/json"}


def test_an_oversized_body_gets_413_at_once_while_others_are_served_and_the_worker_stays(stack):
    replies: list[str] = []

    def small_request() -> None:
        replies.append(chat(stack.client(), max_tokens=32).choices[0].message.content)

    other = threading.Thread(target=small_request)
    other.start()
    content = "x" * (2 * ApiConfig().max_body_bytes)
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": content}]})
    started = time.monotonic()
    response = httpx.post(
        f"{stack.api_url}/chat/completions", content=body.encode(), headers=JSON, timeout=10
    )
    elapsed = time.monotonic() - started
    other.join(30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert elapsed < 1, f"the 413 took {elapsed:.1f} s"
    assert replies and replies[0]
    status = httpx.get(
        f"{stack.controller_url}/status", headers={"Authorization": f"Bearer {SECRET}"}
    )
    workers = status.json()["workers"]
    assert [w["model_names"] for w in workers] == [["tiny"]]


def test_a_prompt_far_over_the_context_is_refused_without_stalling_the_worker(stack):
    started = time.monotonic()
    with pytest.raises(openai.BadRequestError) as info:
        stack.client().completions.create(model="tiny", prompt="hello " * 500_000, max_tokens=2)
    assert info.value.body["code"] == "context_length_exceeded"
    assert time.monotonic() - started < 2
    assert chat(stack.client()).choices[0].message.content


def test_the_worker_refuses_a_body_over_its_cap_with_413(stack):
    cap = WorkerConfig().max_body_bytes
    response = httpx.post(
        f"{stack.worker_url}/worker_generate_stream", content=b"x" * (cap + 1), timeout=10
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


USER_HI = '"messages": [{"role": "user", "content": "hi"}]'
SURROGATE_BODIES = {  # JSON as a client sends it: \ud800 is an escape json.loads lets through
    "content": ("/chat/completions", r'{"messages": [{"role": "user", "content": "a\ud800b"}]}'),
    "content_part": (
        "/chat/completions",
        r'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]}',
    ),
    "name": (
        "/chat/completions",
        r'{"messages": [{"role": "user", "content": "hi", "name": "\ud800"}]}',
    ),
    "stop": ("/chat/completions", "{" + USER_HI + r', "stop": ["\ud800"]}'),
    "model": ("/completions", r'{"prompt": "hi", "model": "tiny\ud800"}'),
    "prompt": ("/completions", r'{"prompt": "\ud800"}'),
    "prompt_list": ("/completions", r'{"prompt": ["hi", "x\udbff"]}'),
    "utf8_encoded_surrogate": ("/completions", '{"prompt": "\xed\xa0\x80"}'),
}


def _local_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


@pytest.mark.parametrize("field", list(SURROGATE_BODIES))
def test_a_lone_surrogate_is_a_400_and_the_same_connection_serves_the_next_request(stack, field):
    path, body = SURROGATE_BODIES[field]
    payload = {"model": "tiny", "max_tokens": 2, **json.loads(body)}
    raw = json.dumps(payload).encode("utf-8", "surrogatepass")
    if field == "utf8_encoded_surrogate":
        raw = raw.replace(b"\\u00ed\\u00a0\\u0080", b"\xed\xa0\x80")
    with httpx.Client(base_url=stack.api_url, headers=JSON, timeout=30) as client:
        bad = client.post(path, content=raw)
        bad_port = _local_port(bad)
        good = client.post("/chat/completions", json={"model": "tiny", "messages": HI})
        good_port = _local_port(good)
    assert bad.status_code == 400, bad.text
    error = bad.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_unicode"
    assert error["param"].split(".")[0] in ("messages", "stop", "model", "prompt")
    assert good.status_code == 200
    assert good_port == bad_port, "the 400 closed the connection"


JSON_MODE = {"type": "json_object"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("endpoint", "asked", "not_asked"),
    [
        ("chat", {"logprobs": True}, {"logprobs": False}),
        ("chat", {"top_logprobs": 2}, {"top_logprobs": 0}),
        ("chat", {"tools": [TOOL]}, {"tools": []}),
        ("chat", {"tool_choice": "auto"}, {"tool_choice": "none"}),
        ("chat", {"functions": [TOOL["function"]]}, {"functions": []}),
        ("chat", {"function_call": "auto"}, {"function_call": "none"}),
        ("chat", {"response_format": JSON_MODE}, {"response_format": {"type": "text"}}),
        ("chat", {"logit_bias": {"42": 5}}, {"logit_bias": {}}),
        ("completions", {"logprobs": 1}, {"logprobs": None}),
        ("completions", {"best_of": 2}, {"best_of": 1}),
        ("completions", {"suffix": " end"}, {"suffix": ""}),
        ("completions", {"extra_body": {"logit_bias": {"42": 5}}}, {"logit_bias": {}}),
    ],
)
def test_an_unsupported_openai_parameter_is_a_400_naming_it(stack, endpoint, asked, not_asked):
    client = stack.client()
    if endpoint == "chat":
        create, args = client.chat.completions.create, {"messages": HI}
    else:
        create, args = client.completions.create, {"prompt": "hi"}
    args = {"model": "tiny", "max_tokens": 2, **args}
    with pytest.raises(openai.BadRequestError) as info:
        create(**args, **asked)
    (param,) = not_asked
    assert info.value.body["param"] == param
    assert info.value.body["code"] == "unsupported_parameter"
    assert f"'{param}'" in info.value.body["message"]
    assert create(**args, **not_asked).choices  # a value asking for nothing is fine
