"""Controller bookkeeping with a fake clock, the wire schemas' validation rules, bearer auth and
the error body round trip."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serve.cluster.controller import Controller
from serve.cluster.protocol import GenerateRequest, HeartbeatRequest, RegisterWorkerRequest
from serve.config import ApiConfig, ControllerConfig
from serve.errors import ContextLengthError, ModelNotFoundError, NoWorkerError, ServeError
from serve.openai.schemas import ChatCompletionRequest, CompletionRequest


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def register(controller: Controller, address: str, capacity: int = 4, queue: int = 0) -> None:
    controller.register(
        RegisterWorkerRequest(
            worker_address=address, model_names=["m"], capacity=capacity, queue_length=queue
        )
    )


def test_silent_worker_expires_and_its_model_then_gives_503_not_404():
    clock = Clock()
    controller = Controller(heartbeat_expiry=10, clock=clock)
    register(controller, "http://a")
    assert controller.list_models() == ["m"]
    clock.now += 11
    assert controller.list_models() == []
    with pytest.raises(NoWorkerError) as info:
        controller.pick("m")
    assert not isinstance(info.value, ModelNotFoundError)
    with pytest.raises(ModelNotFoundError):
        controller.pick("never-served")


def test_heartbeat_from_an_unknown_worker_asks_it_to_register_again():
    controller = Controller()
    assert controller.heartbeat(HeartbeatRequest(worker_address="http://x")).known is False
    register(controller, "http://x")
    assert controller.heartbeat(HeartbeatRequest(worker_address="http://x")).known is True


def test_shortest_queue_counts_dispatches_since_the_last_heartbeat():
    controller = Controller()
    register(controller, "http://busy", capacity=4, queue=3)
    register(controller, "http://idle", capacity=4, queue=0)
    picks = [controller.pick("m").address for _ in range(5)]
    assert picks[:3] == ["http://idle"] * 3  # then both are at 3/4: one each of the next two
    assert set(picks) == {"http://idle", "http://busy"}


def test_reported_failure_removes_the_worker_at_once():
    controller = Controller()
    register(controller, "http://dead")
    controller.remove("http://dead")
    with pytest.raises(NoWorkerError):
        controller.pick("m")


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -0.1},
        {"temperature": 2.01},
        {"top_p": 0},
        {"top_p": 1.5},
        {"n": 0},
        {"n": 9},
        {"max_tokens": 0},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"stop": [""]},
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"stream_options": {"include_usage": True}},  # needs stream: true
        {"presence_penalty": 3},
        {"seed": 2**70},  # torch.Generator takes 64 bits; this once cut the worker's stream
    ],
)
def test_chat_request_rejects_out_of_range_values(bad):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **bad}
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate(body)


def test_chat_request_ignores_unknown_fields_and_normalises_stop_and_max_tokens():
    request = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "developer", "content": [{"type": "text", "text": "be brief"}]}],
            "stop": "END",
            "max_completion_tokens": 7,
            "store": True,  # an OpenAI option this server has no use for: ignored
            "some_future_option": {"x": 1},
            "seed": 5,
        }
    )
    assert request.stop == ["END"]
    assert request.max_tokens == 7
    assert request.messages[0].as_dict() == {"role": "system", "content": "be brief"}
    assert request.sampling_params(1).seed == 6


def test_completion_prompt_may_be_a_list_and_generate_request_needs_one_input():
    assert CompletionRequest(model="m", prompt=["a", "b"]).prompts == ["a", "b"]
    with pytest.raises(ValidationError):
        GenerateRequest()
    with pytest.raises(ValidationError):
        GenerateRequest(prompt="x", messages=[{"role": "user", "content": "y"}])


def test_a_request_failing_mid_stream_keeps_a_healthy_worker_in_rotation():
    import asyncio

    from fake_http import fake_server, json_reply

    from fastchat_lite.processes import free_port
    from serve.cluster.client import ServeClient

    async def report(controller: str, worker: str) -> None:
        client = ServeClient(controller)
        try:
            await client._report_if_dead(worker)
        finally:
            await client.aclose()

    with fake_server(lambda _seen: json_reply({"status": "ok"})) as cluster:
        # the worker answers /health: one broken request is not reported
        asyncio.run(report(cluster.url, cluster.url))
        assert cluster.paths() == ["/health"]
        # nothing listens at the worker's address: the controller is told to drop it
        asyncio.run(report(cluster.url, f"http://127.0.0.1:{free_port()}"))
        assert cluster.paths() == ["/health", "/report_failure"]


def test_chat_reply_drops_the_templates_space_after_assistant_colon_only_once():
    import asyncio

    from serve.engine.base import EngineOutput
    from serve.engine.prompting import without_reply_lead

    async def outputs():
        for text in ["", " I", " am", " here"]:
            yield EngineOutput(text, 5, 1)

    async def collect(lead: str) -> str:
        return "".join([out.text async for out in without_reply_lead(outputs(), lead)])

    assert asyncio.run(collect(" ")) == "I am here"
    assert asyncio.run(collect("")) == " I am here"  # raw completions stay verbatim


@contextlib.contextmanager
def _controller_app(key: str) -> Iterator[tuple[TestClient, str, dict]]:
    from serve.cluster.controller import create_app

    app = create_app(ControllerConfig(worker_secret=key))
    payload = {"worker_address": "http://127.0.0.1:9", "model_names": ["m"]}
    yield TestClient(app), "/register_worker", payload


@contextlib.contextmanager
def _api_app(key: str) -> Iterator[tuple[TestClient, str, None]]:
    from fake_http import fake_server, json_reply

    from serve.cluster.client import ServeClient
    from serve.openai.app import create_app

    with fake_server(lambda _seen: json_reply({"models": ["m"]})) as controller:
        app = create_app(ApiConfig(api_key=[key]), client=ServeClient(controller.url))
        yield TestClient(app), "/v1/models", None


@pytest.mark.parametrize("make_app", [_controller_app, _api_app], ids=["controller", "api"])
def test_bearer_scheme_is_case_insensitive_and_a_wrong_key_is_an_openai_shaped_401(make_app):
    with make_app("sekrit") as (client, path, payload):
        _check_bearer_scheme(client, path, payload)


def _check_bearer_scheme(client: TestClient, path: str, payload: dict | None) -> None:
    def call(headers: dict[str, str]) -> httpx.Response:
        if payload is None:
            return client.get(path, headers=headers)
        return client.post(path, json=payload, headers=headers)

    assert call({"Authorization": "bearer sekrit"}).status_code == 200
    assert call({"Authorization": "BEARER  sekrit "}).status_code == 200
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": "Basic sekrit"}, {}):
        response = call(headers)
        assert response.status_code == 401, headers
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "authentication_error"


def test_a_serve_error_survives_the_trip_through_its_error_body():
    sent = ContextLengthError("too long", param="prompt")
    info = sent.to_info()
    assert (info.type, info.code, info.param) == ("invalid_request_error", sent.code, "prompt")
    received = ServeError.from_info(info, sent.status_code)
    assert type(received) is ContextLengthError
    assert (received.message, received.param, received.status_code) == ("too long", "prompt", 400)
    missing = ServeError.from_info(ModelNotFoundError("no m", param="model").to_info(), 404)
    assert type(missing) is ModelNotFoundError
    assert type(ServeError.from_info(NoWorkerError("down").to_info(), 503)) is NoWorkerError
