"""End to end: real controller, worker and API processes on 127.0.0.1, driven by the openai client.

One stack is shared by the module; the fault tests (worker killed, controller restarted) run last
and leave a working stack behind them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from fastchat_lite.processes import free_port

pytestmark = pytest.mark.slow

API_KEY = "test-key"
SECRET = "worker-secret"
HI = [{"role": "user", "content": "Hello! How can I help you today?"}]


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "fastchat_lite.cli", "serve", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(10)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, openai.APIError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Stack:
    def __init__(self, model_dir) -> None:
        self.model_dir = str(model_dir)
        self.controller_port, self.worker_port, self.api_port = (free_port() for _ in range(3))
        self.controller_url = f"http://127.0.0.1:{self.controller_port}"
        self.worker_url = f"http://127.0.0.1:{self.worker_port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}/v1"
        self.procs: dict[str, subprocess.Popen] = {}

    def start_controller(self) -> None:
        self.procs["controller"] = spawn(
            "controller", "--port", str(self.controller_port), "--heartbeat-expiry", "3",
            "--worker-secret", SECRET,
        )  # fmt: skip

    def start_worker(self) -> None:
        self.procs["worker"] = spawn(
            "worker", "--model", self.model_dir, "--model-name", "tiny", "--controller",
            self.controller_url, "--port", str(self.worker_port), "--worker-secret", SECRET,
            "--threads", "1", "--context-length", "256",
        )  # fmt: skip

    def start_api(self) -> None:
        self.procs["api"] = spawn(
            "api", "--controller", self.controller_url, "--port", str(self.api_port),
            "--api-key", API_KEY, "other-key", "--worker-timeout", "20", "--worker-secret", SECRET,
        )  # fmt: skip

    def client(self, key: str = API_KEY):
        return openai.OpenAI(base_url=self.api_url, api_key=key, max_retries=0, timeout=30)

    def model_listed(self) -> bool:
        return [m.id for m in self.client().models.list().data] == ["tiny"]

    def worker_status(self) -> dict:
        headers = {"Authorization": f"Bearer {SECRET}"}
        return httpx.get(f"{self.worker_url}/worker_status", headers=headers, timeout=5).json()


def running_stack(model_dir) -> Iterator[Stack]:
    """A started stack with the model listed, stopped afterwards (each module's fixture)."""
    s = Stack(model_dir)
    s.start_controller()
    s.start_worker()
    s.start_api()
    try:
        wait_for(s.model_listed, 90, "the worker to register")
        yield s
    finally:
        for proc in s.procs.values():
            stop(proc)


@pytest.fixture(scope="module")
def stack(tiny_model_dir):
    yield from running_stack(tiny_model_dir)


def chat(client, **kwargs):
    args = {"model": "tiny", "messages": HI, "max_tokens": 16, "temperature": 0, **kwargs}
    return client.chat.completions.create(**args)


def test_models_lists_the_registered_model(stack):
    assert stack.model_listed()


def test_chat_completion_reports_text_finish_reason_and_usage(stack):
    response = chat(stack.client())
    choice = response.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert response.usage.completion_tokens == 16
    assert response.usage.total_tokens == response.usage.prompt_tokens + 16
    assert response.usage.prompt_tokens > 10


def test_streaming_equals_non_streaming_at_temperature_zero(stack):
    client = stack.client()
    full = chat(client)
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_n_choices_with_seed_are_reproducible(stack):
    client = stack.client()
    first = chat(client, n=2, temperature=1.2, seed=3)
    again = chat(client, n=2, temperature=1.2, seed=3)
    assert [c.index for c in first.choices] == [0, 1]
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]
    assert first.usage.completion_tokens == 32
    assert first.usage.prompt_tokens == chat(client).usage.prompt_tokens  # prompt counted once


def test_completions_with_prompt_list_stop_and_stream(stack):
    client = stack.client()
    response = client.completions.create(
        model="tiny", prompt=["The quick brown fox", "def add(a, b):"], max_tokens=8, temperature=0
    )
    assert [c.index for c in response.choices] == [0, 1]
    assert response.usage.completion_tokens == 16
    text = response.choices[0].text
    stopped = client.completions.create(
        model="tiny", prompt="The quick brown fox", max_tokens=8, temperature=0, stop=[text[2:4]]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == text[: text.index(text[2:4])]
    streamed = client.completions.create(
        model="tiny", prompt="The quick brown fox", max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == text


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"model": "no-such-model"}, 404, "model"),
        ({"messages": []}, 400, "messages"),
        ({"temperature": 2.5}, 400, "temperature"),
        ({"top_p": 0}, 400, "top_p"),
        ({"n": 0}, 400, "n"),
        ({"max_tokens": 0}, 400, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi " * 400}]}, 400, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, None),
    ],
)
def test_bad_requests_get_openai_shaped_errors(stack, kwargs, status, param):
    args = {"model": "tiny", "messages": HI, "max_tokens": 4, **kwargs}
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as info:
            stack.client().chat.completions.create(stream=stream, **args)
        assert info.value.status_code == status
        error = info.value.body
        assert set(error) >= {"message", "type", "param", "code"}
        if param:
            assert error["param"].startswith(param)


def test_prompt_longer_than_context_has_code_context_length_exceeded(stack):
    with pytest.raises(openai.BadRequestError) as info:
        stack.client().completions.create(model="tiny", prompt="hi " * 400, max_tokens=4)
    assert info.value.body["code"] == "context_length_exceeded"


def test_malformed_json_is_a_400_not_a_500(stack):
    response = httpx.post(
        f"{stack.api_url}/chat/completions",
        content=b'{"model": "tiny", "messages": [',
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_api_key_is_required_and_checked(stack):
    with pytest.raises(openai.AuthenticationError):
        chat(stack.client("wrong-key"))
    assert httpx.get(f"{stack.api_url}/models").status_code == 401
    assert chat(stack.client("other-key")).choices  # every --api-key value works


def test_worker_registration_needs_the_secret(stack):
    payload = {"worker_address": "http://127.0.0.1:9", "model_names": ["evil"]}
    url = f"{stack.controller_url}/register_worker"
    assert httpx.post(url, json=payload).status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert httpx.post(url, json=payload, headers=bad).status_code == 401


def test_health_and_metrics(stack):
    base = stack.api_url.removesuffix("/v1")
    assert httpx.get(f"{base}/health").json()["models"] == ["tiny"]
    metrics = httpx.get(f"{base}/metrics").text
    assert "fastchat_lite_completion_tokens_total" in metrics
    assert 'route="/v1/chat/completions",status="200"' in metrics


def test_32_concurrent_requests_all_succeed_and_match_sequential_output(stack):
    client = stack.client()
    expected = chat(client).choices[0].message.content
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: chat(client).choices[0].message.content, range(32)))
    assert results == [expected] * 32


def test_client_disconnect_mid_stream_cancels_the_sequence_and_frees_its_slot(stack):
    aborted = stack.worker_status()["aborted"]
    body = {
        "model": "tiny",
        "prompt": "The quick",
        "max_tokens": 240,  # context 256: only a cancel can end it before 240 tokens
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream(
        "POST",
        f"{stack.api_url}/completions",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert stack.worker_status()["running"] == 1

    def cancelled_and_freed() -> bool:
        # A sequence that ran to its end would free the slot too, but not count as aborted.
        status = stack.worker_status()
        return status["aborted"] == aborted + 1 and status["queue_length"] == 0

    wait_for(cancelled_and_freed, 5, "the sequence to be cancelled and its slot freed")


def test_killed_worker_gives_fast_503_then_a_new_worker_recovers_service(stack):
    client = stack.client()
    errors: list[Exception] = []

    def load() -> None:
        try:
            chat(client, max_tokens=200)
        except openai.APIError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    stop(stack.procs["worker"])  # kill -9 mid-load
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        chat(client)
    assert info.value.status_code == 503
    assert time.monotonic() - started < 3
    stack.start_worker()
    wait_for(lambda: chat(client).choices[0].message.content, 90, "service to recover")


def test_controller_restart_workers_register_again(stack):
    stop(stack.procs["controller"], signal.SIGTERM)
    stack.start_controller()
    wait_for(stack.model_listed, 30, "the worker to re-register")
    assert chat(stack.client()).choices[0].message.content
