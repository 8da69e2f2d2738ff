"""`serve local --upstream` in front of vLLM's CPU build (the serving peer, see PEERS.md): our
API, controller and clients on top of vLLM, driven by the official openai client.

Needs the vLLM venv at .venv-vllm (`make install` makes it); vLLM starts in 60-110 s here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest
from test_serve_stack import chat
from test_serve_upstream import Front, running_front

from fastchat_lite.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
CONTEXT = 512
TEXTS = ["Hello! How can I help you today?", "The quick brown fox jumps over the lazy dog."]

# `make install` builds the vLLM venv, so under CI a missing one fails instead of skipping.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama vLLM's CPU attention takes (head size 64; the shared fixture's is 16)."""
    if not VLLM_PYTHON.exists():
        pytest.skip(f"no vLLM venv at {VLLM_PYTHON.parent.parent}: run `make install-vllm`")
    from fastchat_lite.tiny import TinyModelConfig, build_tiny_model

    config = TinyModelConfig(
        vocab_size=600, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=CONTEXT,
    )  # fmt: skip
    return build_tiny_model(tmp_path_factory.mktemp("vllm-tiny"), TEXTS * 50, config)


@pytest.fixture(scope="module")
def vllm(vllm_model_dir, tmp_path_factory):
    """vLLM's OpenAI server for the tiny model, as PEERS.md runs it; its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "log.txt"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model",
             str(vllm_model_dir), "--host", "127.0.0.1", "--port", str(port), "--dtype",
             "float32", "--max-model-len", str(CONTEXT), "--served-model-name", "tiny"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def front(vllm, tmp_path_factory):
    # No --context-length: the worker reads max_model_len from vLLM's /v1/models.
    log = tmp_path_factory.mktemp("front-vllm") / "log.txt"
    yield from running_front(Front(vllm, log))


def direct(vllm: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=vllm, api_key="none", max_retries=0, timeout=60)


def test_chat_and_stream_through_the_front_match_vllm(vllm, front):
    # Sampled with a seed: the random model's greedy choice is a special token, i.e. no text.
    sampled = {"max_tokens": 12, "temperature": 1.0, "seed": 1}
    expected = chat(direct(vllm), **sampled)
    assert expected.choices[0].message.content.strip()
    via = chat(front.client(), model="front", **sampled)
    assert via.choices[0].message.content == expected.choices[0].message.content
    assert (via.usage.prompt_tokens, via.usage.completion_tokens) == (
        expected.usage.prompt_tokens, expected.usage.completion_tokens,
    )  # fmt: skip
    chunks = list(
        chat(
            front.client(), model="front", stream=True, stream_options={"include_usage": True},
            **sampled,
        )
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == expected.usage.completion_tokens


def test_stop_strings_and_ignore_eos_reach_vllm(vllm, front):
    args = {"prompt": "The quick brown fox", "max_tokens": 24, "temperature": 1.0, "seed": 1}
    eos = {"extra_body": {"ignore_eos": True}}
    expected = direct(vllm).completions.create(model="tiny", **args, **eos).choices[0].text
    via = front.client().completions.create(model="front", **args, **eos)
    assert via.choices[0].text == expected and via.usage.completion_tokens == 24
    assert expected.strip(), "vLLM produced no text to stop in"
    stop = expected.strip()[:2]
    stopped = front.client().completions.create(model="front", **args, **eos, stop=[stop])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == expected[: expected.index(stop)]


def test_a_prompt_over_vllms_context_is_a_400_context_length_exceeded(front):
    too_long = [{"role": "user", "content": "hi " * (CONTEXT + 100)}]
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            chat(front.client(), model="front", messages=too_long, stream=stream)
        assert info.value.body["code"] == "context_length_exceeded"
        assert str(CONTEXT) in info.value.body["message"]
