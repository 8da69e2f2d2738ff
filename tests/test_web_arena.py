"""Side-by-side mode: both models answer the same prompt, and votes land in a JSONL file."""

from __future__ import annotations

import asyncio
import json

import gradio as gr
import pytest

from serve.errors import NoWorkerError
from serve.web.arena import add_pair_turn, record_vote, refresh_pair, stream_pair
from serve.web.chat import WebLimits

SAMPLING = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 32}
PAIR = {"models": ["alpha", "beta"], "voted": False}


class TwoModelClient:
    """Each model streams its own name in pieces; ``down`` models have no worker."""

    def __init__(self, down=(), hang=False):
        self.down, self.hang, self.closed = set(down), hang, []

    async def list_models(self):
        return ["alpha", "beta"]

    async def stream_chat(self, model, messages, **sampling):
        try:
            if model in self.down:
                raise NoWorkerError(f"no worker serves {model!r}")
            for piece in (model[:2], model[2:]):
                await asyncio.sleep(0)
                yield piece
            while self.hang:
                await asyncio.sleep(0.01)
        finally:
            self.closed.append(model)


def run_pair(client, history):
    async def run():
        return [u async for u in stream_pair(client, PAIR, "", SAMPLING, history, history)]

    return asyncio.run(run())


def test_prompt_goes_to_both_sides_and_pins_the_models():
    box, a, _, b, _, pair = add_pair_turn("hi", "alpha", "beta", [], [], {}, WebLimits())
    assert box == "" and a == b == [{"role": "user", "content": "hi"}]
    assert pair == {"models": ["alpha", "beta"], "voted": False}
    with pytest.raises(gr.Error, match="Clear the conversation before switching"):
        add_pair_turn("more", "alpha", "gamma", a, b, pair, WebLimits())
    with pytest.raises(gr.Error, match="both side A and side B"):
        add_pair_turn("hi", "alpha", None, [], [], {}, WebLimits())


def test_both_models_stream_into_their_own_side():
    updates = run_pair(TwoModelClient(), [{"role": "user", "content": "hi"}])
    history_a, _, history_b, display_b = updates[-1]
    assert history_a[-1]["content"] == "alpha" and history_b[-1]["content"] == "beta"
    assert display_b[-1]["content"][0]["text"] == "beta"
    assert len(updates) >= 4, "each side's pieces are yielded as they arrive"


def test_one_side_failing_does_not_stop_the_other():
    with pytest.warns(UserWarning, match="No worker is serving 'beta'"):
        history_a, _, history_b, _ = run_pair(
            TwoModelClient(down={"beta"}), [{"role": "user", "content": "hi"}]
        )[-1]
    assert history_a[-1]["content"] == "alpha" and "error" not in history_a[-1]
    assert history_b[-1]["error"]


def test_stopping_the_pair_closes_both_client_streams():
    client = TwoModelClient(hang=True)

    async def run() -> list[str]:
        updates = stream_pair(client, PAIR, "", SAMPLING, [{"role": "user", "content": "x"}], [])
        async for history_a, _, _, _ in updates:
            if history_a[-1]["content"] == "alpha":
                break
        await updates.aclose()
        return sorted(client.closed)

    assert asyncio.run(run()) == ["alpha"]  # side B had no user turn, so it never started
    client = TwoModelClient(hang=True)

    async def run_both() -> list[str]:
        turn = [{"role": "user", "content": "x"}]
        updates = stream_pair(client, PAIR, "", SAMPLING, turn, turn)
        seen = 0
        async for _ in updates:
            seen += 1
            if seen == 5:
                break
        await updates.aclose()
        return sorted(client.closed)

    assert asyncio.run(run_both()) == ["alpha", "beta"]


def test_vote_appends_one_jsonl_line_and_only_once_per_answer(tmp_path):
    votes = tmp_path / "votes.jsonl"
    a = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "from a"}]
    b = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "from b"}]
    pair, status = record_vote(votes, "a", PAIR, "Be brief.", a, b)
    assert pair["voted"] and "A is better" in status
    (line,) = votes.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert record["vote"] == "a" and (record["model_a"], record["model_b"]) == ("alpha", "beta")
    assert record["conversation_b"] == [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "hi"},
        {"from": "gpt", "value": "from b"},
    ]
    with pytest.raises(gr.Error, match="already voted"):
        record_vote(votes, "b", pair, "", a, b)
    with pytest.raises(gr.Error, match="--vote-file"):
        record_vote(None, "a", PAIR, "", a, b)
    with pytest.raises(gr.Error, match="before voting"):
        record_vote(votes, "tie", PAIR, "", [], [])
    assert len(votes.read_text(encoding="utf-8").splitlines()) == 1


def test_refresh_offers_a_different_model_on_side_b():
    update_a, update_b = asyncio.run(refresh_pair(TwoModelClient(), None, None))
    assert update_a["choices"] == update_b["choices"] == ["alpha", "beta"]
    assert (update_a["value"], update_b["value"]) == ("alpha", "beta")
