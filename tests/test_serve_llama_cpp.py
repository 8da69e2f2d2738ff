"""``--backend llama-cpp``: a GGUF served by llama.cpp behind our controller and OpenAI API.

Unit level: AMX detection and the repack switch, the model-path and option checks, a missing
llama-cpp-python. In process: the engine against a fake Llama (cancelling, failures) and the
real one against the torch engine (greedy text, seeds, FIFO order). End to end: `serve local
--backend llama-cpp` driven by the official openai client.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

pytest.importorskip("llama_cpp")  # CI installs the [llamacpp] extra: a skip there fails

import llama_cpp
from test_gguf_tokenizer import tiny_gguf_fixture  # noqa: F401  (provides tiny_gguf)
from test_serve_stack import API_KEY, HI, SECRET, Stack, chat, wait_for

from fastchat_lite.errors import FastChatLiteError, MissingExtraError
from fastchat_lite.gguf import export_gguf
from serve.config import LocalConfig, WorkerConfig
from serve.engine.backends import check_model_source, load_engine
from serve.engine.base import EngineOutput
from serve.engine.gguf_tokenizer import GgufTokenizer
from serve.engine.llama_cpp import (
    LlamaCppEngine,
    cpu_has_amx,
    load_llama,
    repack_weights,
    served_context,
)
from serve.engine.prompting import PromptBuilder
from serve.errors import ContextLengthError
from serve.local import run_local
from serve.schemas import ChatMessage, SamplingParams

CONTEXT = 256
GREEDY = SamplingParams(temperature=0, max_tokens=20)
SOURCES: list[str | list[ChatMessage]] = [
    [ChatMessage(**m) for m in HI],
    [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="你好")],
    "The quick brown fox",
    "def add(a, b):",
]

# ---------------------------------------------------------------- unit level

AMX_CPU = "processor : 0\nflags : fpu sse2 avx512f amx_bf16 amx_tile amx_int8\n"
OTHER_CPU = "processor : 0\nflags : fpu sse2 avx2 avx512f\n"


def test_auto_repack_is_off_exactly_on_cpus_with_amx():
    assert cpu_has_amx(AMX_CPU) and not cpu_has_amx(OTHER_CPU) and not cpu_has_amx("")
    assert [repack_weights(m, AMX_CPU) for m in ("auto", "on", "off")] == [False, True, False]
    assert [repack_weights(m, OTHER_CPU) for m in ("auto", "on", "off")] == [True, True, False]
    with pytest.raises(FastChatLiteError, match="--repack 'maybe'"):
        repack_weights("maybe", OTHER_CPU)


def test_the_repack_switch_reaches_llama_cpps_model_params_and_defaults_are_restored(tiny_gguf):
    default = llama_cpp.llama_cpp.llama_model_default_params
    for repack in (False, True):
        llama = load_llama(str(tiny_gguf), context_length=64, threads=1, repack=repack)
        assert llama.model_params.use_extra_bufts is repack
        assert served_context(llama, 64) == 64  # llama.cpp rounded its cache up to 256
        assert served_context(llama, None) == llama.n_ctx() == 256  # the GGUF says 512
        llama.close()
    assert llama_cpp.llama_cpp.llama_model_default_params is default


def test_a_quantized_gguf_generates_with_repack_off(tiny_model_dir, tmp_path):
    path = export_gguf(tiny_model_dir, tmp_path / "q8.gguf", dtype="q8_0").path
    engine, prompts = load_engine(
        WorkerConfig(model=str(path), backend="llama-cpp", threads=1, repack="off")
    )
    try:
        outs = collect(engine, prompts.prompt_ids(SOURCES[0]), GREEDY)
    finally:
        engine.close()
    assert (outs[-1].finish_reason, outs[-1].completion_tokens) == ("length", 20)


def test_without_llama_cpp_python_the_worker_says_which_extra_to_install(tiny_gguf, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    config = WorkerConfig(model=str(tiny_gguf), backend="llama-cpp")
    with pytest.raises(MissingExtraError, match=r"pip install 'fastchat-lite\[llamacpp\]'"):
        load_engine(config)


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("dir", {"backend": "llama-cpp"}, "is a directory; --backend llama-cpp serves one .gguf"),
        ("missing.gguf", {"backend": "llama-cpp"}, "does not exist"),
        ("fake.gguf", {"backend": "llama-cpp"}, "is not a GGUF file"),
        ("gguf", {"backend": "hf"}, "is a GGUF file: serve it with --backend llama-cpp"),
        ("gguf", {"backend": "vllm"}, "is a GGUF file: serve it with --backend llama-cpp"),
        ("gguf", {"backend": "llama-cpp", "device": "cuda"}, "--device cuda is not supported"),
        ("gguf", {"backend": "llama-cpp", "dtype": "bf16"}, "--dtype bf16 does not apply"),
    ],
)
def test_a_model_that_does_not_fit_the_backend_is_refused_with_the_fix(
    tiny_gguf, tiny_model_dir, tmp_path, model, options, message
):
    (tmp_path / "fake.gguf").write_text("not a model")
    paths = {"dir": tiny_model_dir, "gguf": tiny_gguf}
    config = WorkerConfig(model=str(paths.get(model, tmp_path / model)), **options)
    with pytest.raises(FastChatLiteError, match=message.replace(".", r"\.")):
        check_model_source(config)
    with pytest.raises(FastChatLiteError, match=message.replace(".", r"\.")):
        load_engine(config)  # checked before anything loads


def test_serve_local_checks_the_gguf_before_starting_any_child(tiny_model_dir):
    config = LocalConfig(worker=WorkerConfig(model=str(tiny_model_dir), backend="llama-cpp"))
    with pytest.raises(FastChatLiteError, match="is a directory"):
        run_local(config)


# ---------------------------------------------------------------- in process


def test_a_llama_cpp_worker_never_loads_torch(tiny_gguf):
    # torch alone is ~185 MiB resident: more than a 4-bit 100M model. The laptop path has none.
    code = (
        "import sys\n"
        "from serve.cluster.worker import build_service\n"
        "from serve.config import WorkerConfig\n"
        f"service = build_service(WorkerConfig(model={str(tiny_gguf)!r}, backend='llama-cpp'))\n"
        "service.engine.close()\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def collect(engine: Any, prompt_ids: list[int], params: SamplingParams) -> list[EngineOutput]:
    async def run() -> list[EngineOutput]:
        return [out async for out in engine.generate(prompt_ids, params)]

    return asyncio.run(run())


def text_of(outs: list[EngineOutput]) -> str:
    return "".join(o.text for o in outs)


@pytest.fixture(scope="module")
def llama_engine(tiny_gguf):
    engine, prompts = load_engine(
        WorkerConfig(model=str(tiny_gguf), backend="llama-cpp", threads=1, context_length=CONTEXT)
    )
    yield engine, prompts
    engine.close()


@pytest.fixture(scope="module")
def torch_engine(tiny_model_dir):
    """The torch worker's engine for the same model, as the reference."""
    engine, prompts = load_engine(
        WorkerConfig(model=str(tiny_model_dir), threads=1, context_length=CONTEXT)
    )
    yield engine, prompts
    engine.close()


def test_greedy_output_and_usage_equal_the_torch_engines(llama_engine, torch_engine):
    for source in SOURCES:
        ours, theirs = (
            collect(engine, prompts.prompt_ids(source), GREEDY)
            for engine, prompts in (llama_engine, torch_engine)
        )
        assert text_of(ours) == text_of(theirs), source
        last, expected = ours[-1], theirs[-1]
        assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == (
            expected.finish_reason, expected.prompt_tokens, expected.completion_tokens,
        )  # fmt: skip


def test_the_same_seed_gives_the_same_text_and_top_k_1_is_greedy(llama_engine):
    engine, prompts = llama_engine
    ids = prompts.prompt_ids("The quick brown fox")

    def sample(**kwargs: Any) -> str:
        return text_of(collect(engine, ids, SamplingParams(max_tokens=20, **kwargs)))

    first = sample(temperature=1.0, seed=3)
    assert sample(temperature=1.0, seed=3) == first
    assert sample(temperature=1.0, seed=4) != first
    assert sample(temperature=1.0, top_k=1) == sample(temperature=0)


def test_stop_strings_end_the_reply_before_the_stop_text(llama_engine):
    engine, prompts = llama_engine
    ids = prompts.prompt_ids("The quick brown fox")
    full = text_of(collect(engine, ids, GREEDY))
    stop = full[5:8]
    outs = collect(engine, ids, GREEDY.model_copy(update={"stop": [stop]}))
    assert text_of(outs) == full[: full.index(stop)]
    assert outs[-1].finish_reason == "stop"


def test_a_prompt_that_fills_the_context_is_refused(llama_engine):
    engine, _ = llama_engine
    assert engine.max_new_tokens(CONTEXT - 10, None) == 10
    assert engine.max_new_tokens(CONTEXT - 10, 4) == 4
    with pytest.raises(ContextLengthError, match=f"maximum context length is {CONTEXT}"):
        engine.max_new_tokens(CONTEXT, 1)


def test_requests_run_one_at_a_time_in_arrival_order_with_exact_counters(tiny_gguf):
    llama = load_llama(str(tiny_gguf), context_length=CONTEXT, threads=1, repack=False)
    tokenizer = GgufTokenizer.from_llama(llama)
    prompts = PromptBuilder(tokenizer, "vicuna_v1.1")
    engine = LlamaCppEngine(llama, tokenizer, context_length=CONTEXT, stop_token_ids=[])
    seen: list[tuple[int, EngineOutput]] = []
    done = threading.Semaphore(0)

    def sink_for(request: int):
        def sink(out: EngineOutput) -> None:
            seen.append((request, out))
            if out.finish_reason:
                done.release()

        return sink

    ids = prompts.prompt_ids("The quick brown fox")
    for request in range(3):
        engine.submit(ids, SamplingParams(temperature=0, max_tokens=8), sink_for(request))
    assert (engine.max_batch_size, engine.running, engine.waiting) == (1, 0, 3)
    engine.start()
    try:
        for _ in range(3):
            assert done.acquire(timeout=30)
        order = [request for request, _ in seen]
        assert order == sorted(order)  # each finished before the next one started
        assert [out.finish_reason for _, out in seen if out.finish_reason] == ["length"] * 3
        wait_for(lambda: (engine.running, engine.waiting, engine.aborted) == (0, 0, 0), 5)
    finally:
        engine.close()


class FakeLlama:
    """Stands in for ``llama_cpp.Llama``: yields ``tokens`` forever, one per ``delay`` seconds,
    raising ``fail`` after ``fail_after`` tokens; counts the tokens it was asked for."""

    def __init__(self, tokens: list[int], *, delay: float = 0.0, fail_after: int | None = None):
        self.tokens, self.delay, self.fail_after = tokens, delay, fail_after
        self.produced = 0
        self.seeds: list[int] = []
        self.resets = 0

    def set_seed(self, seed: int) -> None:
        self.seeds.append(seed)

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        pass

    def generate(self, prompt: list[int], reset: bool = True, **_: Any) -> Iterator[int]:
        while True:
            if self.fail_after is not None and self.produced >= self.fail_after:
                raise RuntimeError("decode failed: boom")
            time.sleep(self.delay)
            yield self.tokens[self.produced % len(self.tokens)]
            self.produced += 1


@pytest.fixture(scope="module")
def gguf_tokenizer(tiny_gguf):
    tokenizer = GgufTokenizer.from_file(tiny_gguf)
    yield tokenizer
    tokenizer.close()


def fake_engine(tokenizer: GgufTokenizer, llama: FakeLlama) -> LlamaCppEngine:
    return LlamaCppEngine(llama, tokenizer, context_length=CONTEXT).start()


def test_closing_the_stream_cancels_the_request_before_its_next_token(gguf_tokenizer):
    tokens = gguf_tokenizer("abc def ghi", add_special_tokens=False)["input_ids"]
    llama = FakeLlama(tokens, delay=0.01)
    engine = fake_engine(gguf_tokenizer, llama)
    params = SamplingParams(max_tokens=200, ignore_eos=True)

    async def read_two_then_close() -> None:
        stream = engine.generate([1, 2, 3], params)
        for _ in range(2):
            await anext(stream)
        await stream.aclose()

    try:
        asyncio.run(read_two_then_close())
        wait_for(lambda: (engine.running, engine.aborted) == (0, 1), 5, "the cancel")
        assert llama.produced < 10  # not the 200 asked for
        outs = collect(engine, [1, 2, 3], SamplingParams(max_tokens=3, seed=7))
        assert outs[-1].finish_reason == "length" and llama.seeds[-1] == 7
    finally:
        engine.close()


def test_a_decode_failure_fails_that_request_only(gguf_tokenizer):
    llama = FakeLlama([300, 301], fail_after=2)
    engine = fake_engine(gguf_tokenizer, llama)
    try:
        outs = collect(engine, [1, 2, 3], SamplingParams(max_tokens=50))
        assert outs[-1].finish_reason == "error" and "boom" in (outs[-1].error or "")
        assert llama.resets == 1  # the KV cache state is unknown after a failure
        llama.fail_after = None
        assert collect(engine, [1, 2], SamplingParams(max_tokens=2))[-1].finish_reason == "length"
        assert (engine.running, engine.waiting, engine.aborted) == (0, 0, 0)
    finally:
        engine.close()


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def local_stack(tiny_gguf, tmp_path_factory) -> Iterator[Stack]:
    """`serve local --backend llama-cpp` on free ports, with the worker's port known."""
    stack = Stack(tiny_gguf)
    log_path = tmp_path_factory.mktemp("llama-local") / "log.txt"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastchat_lite.cli", "serve", "local", "--no-web",
             "--model", str(tiny_gguf), "--backend", "llama-cpp", "--model-name", "tiny",
             "--threads", "1", "--context-length", str(CONTEXT), "--port", str(stack.api_port),
             "--controller-port", str(stack.controller_port), "--worker-port",
             str(stack.worker_port), "--worker-secret", SECRET, "--api-key", API_KEY],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not _listed(stack):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        yield stack
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the launcher stops its children
            proc.wait(15)


def _listed(stack: Stack) -> bool:
    try:
        return stack.model_listed()
    except openai.APIError:
        return False


@pytest.mark.slow
def test_chat_answers_the_torch_workers_greedy_text_for_the_same_prompt_ids(
    local_stack, torch_engine
):
    response = chat(local_stack.client(), max_tokens=20)
    engine, prompts = torch_engine
    ids = prompts.prompt_ids([ChatMessage(**m) for m in HI])
    assert response.choices[0].message.content == text_of(collect(engine, ids, GREEDY))
    assert response.choices[0].finish_reason == "length"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (len(ids), 20)
    status = local_stack.worker_status()
    assert (status["capacity"], status["running"], status["waiting"]) == (1, 0, 0)
    assert status["context_length"] == CONTEXT


@pytest.mark.slow
def test_streaming_reports_usage_in_its_last_chunk_and_equals_non_streaming(local_stack):
    client = local_stack.client()
    full = chat(client)
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens == 16
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


@pytest.mark.slow
def test_completions_with_a_stop_string_and_seeded_samples(local_stack):
    client = local_stack.client()
    args = {"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 8, "temperature": 0}
    text = client.completions.create(**args).choices[0].text
    stopped = client.completions.create(**args, stop=[text[2:4]]).choices[0]
    assert (stopped.finish_reason, stopped.text) == ("stop", text[: text.index(text[2:4])])
    first = chat(client, n=2, temperature=1.2, seed=3)
    again = chat(client, n=2, temperature=1.2, seed=3)
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]


@pytest.mark.slow
def test_a_prompt_longer_than_the_context_is_a_400_in_openai_shape(local_stack):
    with pytest.raises(openai.BadRequestError) as info:
        chat(local_stack.client(), messages=[{"role": "user", "content": "hi " * 400}])
    error = info.value.body
    assert set(error) >= {"message", "type", "param", "code"}
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")
