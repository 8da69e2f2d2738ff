"""The batching engine and its decoding pieces, driven with the tiny model in-process."""

from __future__ import annotations

import threading
import time

import pytest

from serve.engine.batching import GenerationEngine
from serve.engine.decoding import IncrementalDetokenizer, StopStrings
from serve.errors import ContextLengthError
from serve.schemas import SamplingParams

PROMPTS = [
    "Hello! How can I help you today?",
    "Write a Python function that adds two numbers.",
    "你好，世界！",
    "Emoji test 🎉🚀",
    "The quick brown fox",
    "def add(a, b):",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from fastchat_lite.model_loading import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from fastchat_lite.model_loading import load_model

    return load_model(tiny_model_dir, device="cpu").eval()


@pytest.fixture(scope="module")
def engine(model, tokenizer):
    eng = GenerationEngine(model, tokenizer, context_length=128, max_batch_size=4).start()
    yield eng
    eng.close()


class Collector:
    """Sink for one request that remembers every output and signals the last."""

    def __init__(self) -> None:
        self.outputs = []
        self.done = threading.Event()

    def __call__(self, out) -> None:
        self.outputs.append(out)
        if out.finish_reason:
            self.done.set()

    @property
    def text(self) -> str:
        return "".join(o.text for o in self.outputs)

    def result(self, timeout: float = 60) -> tuple[str, str, int]:
        assert self.done.wait(timeout), "generation did not finish"
        last = self.outputs[-1]
        return self.text, last.finish_reason, last.completion_tokens


def generate(engine, tokenizer, prompt: str, params: SamplingParams) -> tuple[str, str, int]:
    sink = Collector()
    engine.submit(tokenizer(prompt)["input_ids"], params, sink)
    return sink.result()


def test_batched_greedy_equals_unbatched_greedy_when_requests_join_mid_decode(engine, tokenizer):
    lengths = [12, 30, 7, 25, 18, 40]  # sequences leave at different steps; 6 > batch size 4
    params = [SamplingParams(temperature=0, max_tokens=n) for n in lengths]
    alone = [generate(engine, tokenizer, p, s) for p, s in zip(PROMPTS, params, strict=True)]
    before = engine.batch_sizes.copy()
    sinks = []
    for prompt, sampling in zip(PROMPTS, params, strict=True):
        sinks.append(Collector())
        engine.submit(tokenizer(prompt)["input_ids"], sampling, sinks[-1])
        time.sleep(0.004)  # arrive while others are decoding
    together = [sink.result() for sink in sinks]
    assert together == alone
    assert [r[2] for r in together] == lengths
    assert all(r[1] == "length" for r in together)
    assert max(engine.batch_sizes - before) > 1  # they did share decode steps


def test_concurrent_requests_are_decoded_together_in_one_batch(engine, tokenizer):
    before = engine.batch_sizes.copy()
    sinks = [Collector() for _ in range(engine.max_batch_size)]
    for prompt, sink in zip(PROMPTS, sinks, strict=False):
        params = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
        engine.submit(tokenizer(prompt)["input_ids"], params, sink)
    assert [sink.result()[2] for sink in sinks] == [24] * len(sinks)
    steps = engine.batch_sizes - before  # decode steps by how many sequences they decoded
    assert steps[engine.max_batch_size] > 0
    assert sum(size * count for size, count in steps.items()) == len(sinks) * 23  # 1st: prefill


def test_same_seed_gives_same_sample_and_other_seed_differs(engine, tokenizer):
    def sample(seed: int) -> str:
        params = SamplingParams(temperature=1.5, top_p=0.95, top_k=50, max_tokens=24, seed=seed)
        return generate(engine, tokenizer, PROMPTS[0], params)[0]

    first = sample(7)
    assert sample(7) == first
    assert sample(8) != first


def test_stop_string_ends_reply_before_the_stop_text(engine, tokenizer):
    free = generate(engine, tokenizer, PROMPTS[1], SamplingParams(temperature=0, max_tokens=30))
    text = free[0]
    stop = text[5:8]
    assert len(stop) == 3 and stop in text
    stopped = generate(
        engine, tokenizer, PROMPTS[1], SamplingParams(temperature=0, max_tokens=30, stop=[stop])
    )
    assert stopped[1] == "stop"
    assert stopped[0] == text[: text.index(stop)]


def test_stop_token_id_finishes_with_reason_stop(engine, tokenizer):
    free = generate(engine, tokenizer, PROMPTS[2], SamplingParams(temperature=0, max_tokens=10))
    first_id = tokenizer(PROMPTS[2])["input_ids"]  # any id will do: use the 3rd generated one
    ids = tokenizer(free[0], add_special_tokens=False)["input_ids"]
    assert first_id and len(ids) >= 3
    params = SamplingParams(temperature=0, max_tokens=10, stop_token_ids=[ids[2]])
    text, reason, _ = generate(engine, tokenizer, PROMPTS[2], params)
    assert reason == "stop"
    assert len(text) < len(free[0])


def test_cancel_frees_the_slot_before_the_next_step(engine, tokenizer):
    sink = Collector()
    seq = engine.submit(
        tokenizer(PROMPTS[0])["input_ids"], SamplingParams(temperature=0, max_tokens=100), sink
    )
    deadline = time.monotonic() + 10
    while not sink.outputs and time.monotonic() < deadline:
        time.sleep(0.001)
    aborted = engine.aborted
    engine.cancel(seq)
    _text, reason, count = sink.result(10)
    assert reason == "abort" and count < 100
    assert engine.aborted == aborted + 1
    deadline = time.monotonic() + 5
    while engine.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.running == 0 and engine.waiting == 0


def test_prompt_longer_than_context_is_refused(engine, tokenizer):
    with pytest.raises(ContextLengthError, match="maximum context length is 128"):
        engine.submit(list(range(5, 200)), SamplingParams(), Collector())


def test_max_tokens_is_bounded_by_the_context_window(engine, tokenizer):
    ids = tokenizer("hello " * 30)["input_ids"]
    assert engine.max_new_tokens(len(ids), 10_000) == 128 - len(ids)


def hf_greedy_ids(model, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """transformers' own greedy ``generate`` for one prompt, never stopping at EOS."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(
        do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=None, pad_token_id=0
    )
    out = model.generate(torch.tensor([prompt_ids]), generation_config=config)
    return out[0, len(prompt_ids) :].tolist()


def submit_together(engine, prompts: list[list[int]], lengths: list[int]) -> list[list[int]]:
    """Submit every prompt at once (one batched prefill) and return each one's output ids."""
    sinks = [Collector() for _ in prompts]
    seqs = [
        engine.submit(ids, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True), sink)
        for ids, n, sink in zip(prompts, lengths, sinks, strict=True)
    ]
    for sink in sinks:
        sink.result()
    return [seq.output_ids for seq in seqs]


def test_greedy_tokens_equal_transformers_generate_for_prompts_prefilled_together(
    engine, model, tokenizer
):
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS[:4]]  # 4 lengths, left-padded
    lengths = [20, 35, 12, 28]
    expected = [hf_greedy_ids(model, ids, n) for ids, n in zip(prompts, lengths, strict=True)]
    assert len({len(ids) for ids in prompts}) > 1
    assert submit_together(engine, prompts, lengths) == expected


def test_kv_cache_growing_past_its_headroom_gives_the_same_tokens(model, tokenizer, monkeypatch):
    from serve.engine import kv_cache

    monkeypatch.setattr(kv_cache, "HEADROOM", 2)  # reallocate every few steps
    prompts = [tokenizer(p)["input_ids"] for p in (PROMPTS[1], PROMPTS[4] * 3)]
    lengths = [60, 45]
    expected = [hf_greedy_ids(model, ids, n) for ids, n in zip(prompts, lengths, strict=True)]
    eng = GenerationEngine(model, tokenizer, context_length=256, max_batch_size=4).start()
    try:
        assert submit_together(eng, prompts, lengths) == expected
    finally:
        eng.close()


def test_stream_merges_outputs_between_intervals_and_sends_the_first_and_last_at_once(
    engine, tokenizer
):
    import asyncio

    async def chunks(interval: float) -> list:
        params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
        ids = tokenizer(PROMPTS[0])["input_ids"]
        return [o async for o in engine.generate(ids, params, interval=interval)]

    every = asyncio.run(chunks(0.0))
    # A 10-minute interval: the finishing output must still wake the consumer at once
    # (otherwise this hangs until the test's timeout).
    merged = asyncio.run(chunks(600.0))
    assert "".join(o.text for o in merged) == "".join(o.text for o in every)
    assert len(every) > 2 and len(merged) == 2  # the first output, then everything else
    assert merged[-1].finish_reason == "length" and merged[-1].completion_tokens == 40
    assert [o.completion_tokens for o in every] == sorted({o.completion_tokens for o in every})


# Texts unseen by the BPE training, so they are split into byte tokens.
@pytest.mark.parametrize("text", ["猫和狗在花园里玩。", "Unseen emoji 🛸🦄 here"])
def test_detokenizer_never_emits_half_a_multibyte_character(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tokenizer, tokenizer("USER: hi")["input_ids"])
    deltas = [detok.add(i) for i in ids]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert len(ids) > len([d for d in deltas if d])  # some byte tokens were held back


def test_stop_strings_hold_back_a_partial_match_and_release_it_when_it_diverges():
    stops = StopStrings(["###"])
    assert stops.feed("Hello #") == ("Hello ", False)
    assert stops.feed("#") == ("", False)
    assert stops.feed(" ok") == ("## ok", False)
    assert stops.feed(" done##") == (" done", False)
    assert stops.feed("#tail") == ("", True)
    other = StopStrings(["END"])
    assert other.feed("abcE") == ("abc", False)
    assert other.flush() == "E"
