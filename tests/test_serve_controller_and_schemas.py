"""Controller bookkeeping with a fake clock, and the wire schemas' validation rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serve.cluster.controller import Controller
from serve.errors import ModelNotFoundError, NoWorkerError
from serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    GenerateRequest,
    HeartbeatRequest,
    RegisterWorkerRequest,
)


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
            "logit_bias": {"1": 2},
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

    import httpx

    from serve.cluster.client import ServeClient

    reported: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        reported.append(request.url.path)
        return httpx.Response(200, json={})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = ServeClient("http://controller", http=http)
    asyncio.run(client._report_if_dead("http://worker"))
    assert reported == []

    def dead(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            raise httpx.ConnectError("refused")
        reported.append(request.url.path)
        return httpx.Response(200, json={})

    http = httpx.AsyncClient(transport=httpx.MockTransport(dead))
    client = ServeClient("http://controller", http=http)
    asyncio.run(client._report_if_dead("http://worker"))
    assert reported == ["/report_failure"]


def test_chat_reply_drops_the_templates_space_after_assistant_colon_only_once():
    import asyncio

    from serve.engine.batching import EngineOutput
    from serve.engine.prompting import without_reply_lead

    async def outputs():
        for text in ["", " I", " am", " here"]:
            yield EngineOutput(text, 5, 1)

    async def collect(lead: str) -> str:
        return "".join([out.text async for out in without_reply_lead(outputs(), lead)])

    assert asyncio.run(collect(" ")) == "I am here"
    assert asyncio.run(collect("")) == " I am here"  # raw completions stay verbatim
