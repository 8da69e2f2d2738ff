"""``eval answer``: a tiny model served by our stack answers both benches through the real API;
the second turn sees the first answer, temperatures follow the category, runs resume, and
429s are retried."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from fastchat_lite.cli import main
from fastchat_lite.processes import cli_argv, free_port, listed_models, offline_env, spawn, stop
from fastchat_lite.processes import wait_until as wait_for_child
from llm_judge.answers import answer_model
from llm_judge.config import AnswerConfig, answer_path
from llm_judge.questions import load_questions


def fake_api(replies_seen: list[dict], fail_first: int = 0) -> httpx.MockTransport:
    """Answers "answer N" to the N-th request; the first ``fail_first`` requests get 429."""

    def handle(request: httpx.Request) -> httpx.Response:
        replies_seen.append(json.loads(request.content))
        if len(replies_seen) <= fail_first:
            return httpx.Response(429, json={"error": {"message": "slow down"}})
        text = f"answer {len(replies_seen)}"
        body = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}
        return httpx.Response(200, json={**body, "usage": {"prompt_tokens": 3}})

    return httpx.MockTransport(handle)


def test_second_turn_sees_the_first_answer_and_temperature_follows_the_category(tmp_path):
    seen: list[dict] = []
    config = AnswerConfig(bench="mt_bench", out_dir=str(tmp_path), max_retries=3)
    writing, math = load_questions("mt_bench", ["81", "111"])
    job = answer_model(
        "m", "http://fake/v1", None, [writing, math], config, progress=False,
        transport=fake_api(seen, fail_first=1),
    )  # fmt: skip
    report = asyncio.run(job)
    assert (report.answered, report.failed, report.prompt_tokens) == (2, [], 12)
    assert len(seen) == 5  # one 429 retried, then 2 questions x 2 turns
    answered = seen[1:]
    for question, temperature in ((writing, 0.7), (math, 0.0)):
        mine = [r for r in answered if r["messages"][0]["content"] == question.turns[0]]
        assert [len(r["messages"]) for r in mine] == [1, 3]
        assert {r["temperature"] for r in mine} == {temperature}
        first_answer = mine[1]["messages"][1]
        assert first_answer["role"] == "assistant"
        position = next(i for i, r in enumerate(seen) if r is mine[0])  # not the 429'd copy
        assert first_answer["content"] == f"answer {position + 1}"


@pytest.fixture(scope="module")
def served_tiny(tiny_model_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("stack-logs")
    controller, worker, api = (free_port() for _ in range(3))
    controller_url = f"http://127.0.0.1:{controller}"
    env = {**offline_env(), "OMP_NUM_THREADS": "1"}
    commands = {
        "controller": ["serve", "controller", "--port", controller],
        "worker": ["serve", "worker", "--model", tiny_model_dir, "--model-name", "tiny",
                   "--controller", controller_url, "--port", worker, "--threads", "1",
                   "--context-length", "512"],
        "api": ["serve", "api", "--controller", controller_url, "--port", api],
    }  # fmt: skip
    procs = {
        name: spawn(cli_argv(args), env=env, log=(logs / f"{name}.log").open("wb"))
        for name, args in commands.items()
    }
    base = f"http://127.0.0.1:{api}/v1"
    try:
        wait_for_child(lambda: listed_models(base) == ["tiny"], procs, "the tiny stack", timeout=90)
        yield base
    finally:
        stop(procs.values())


@pytest.mark.slow
def test_a_served_tiny_model_answers_both_benches_and_a_rerun_resumes(served_tiny, tmp_path):
    out = str(tmp_path)
    args = ["eval", "answer", "--model", "tiny", "--api", served_tiny, "--out-dir", out,
            "--max-tokens", "8", "--quiet"]  # fmt: skip
    assert main([*args, "--bench", "vicuna", "--question-ids", "1", "7"]) == 0
    assert main([*args, "--bench", "mt_bench", "--question-ids", "116", "125"]) == 0
    vicuna = [json.loads(x) for x in answer_path(out, "vicuna", "tiny").read_text().splitlines()]
    mt = [json.loads(x) for x in answer_path(out, "mt_bench", "tiny").read_text().splitlines()]
    assert sorted(r["question_id"] for r in vicuna) == [1, 7]
    assert all(len(r["choices"][0]["turns"]) == 1 for r in vicuna)
    assert sorted(r["question_id"] for r in mt) == [116, 125]
    assert all(len(r["choices"][0]["turns"]) == 2 and r["model_id"] == "tiny" for r in mt)
    assert main([*args, "--bench", "vicuna", "--question-ids", "1", "7", "55"]) == 0
    again = answer_path(out, "vicuna", "tiny").read_text().splitlines()
    assert len(again) == 3 and json.loads(again[-1])["question_id"] == 55  # only the new one


def test_a_refused_request_is_reported_and_not_written(tmp_path, capsys):
    port = free_port()  # nothing listens: every attempt fails fast
    args = ["eval", "answer", "--bench", "vicuna", "--question-ids", "1", "--model", "m",
            "--api", f"http://127.0.0.1:{port}", "--out-dir", str(tmp_path), "--max-retries",
            "0", "--quiet"]  # fmt: skip
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "failed question 1" in captured.err and "ConnectError" in captured.err
    assert (
        not answer_path(str(tmp_path), "vicuna", "m").exists()
        or not answer_path(str(tmp_path), "vicuna", "m").read_text()
    )
