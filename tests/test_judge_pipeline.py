"""``eval judge`` / ``show`` / ``arena`` against a judge stand-in served on 127.0.0.1: parsing,
retries on 429 and on unparseable verdicts, position swaps, the cache, reports and figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from judge_fixtures import StandIn, create_standin_app, serve_in_thread

from fastchat_lite.cli import main
from fastchat_lite.processes import free_port
from llm_judge.config import JudgeConfig, ShowConfig, answer_path
from llm_judge.judge import judgment_file, load_judgments, run_judge
from llm_judge.report import summarize

QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["Describe a sunny beach holiday."]},
    {"question_id": 2, "category": "math", "turns": ["What is two plus two? MALFORMED-ONCE"]},
    {"question_id": 3, "category": "writing", "turns": ["Name a fruit you like. ALWAYS-A"]},
    {"question_id": 4, "category": "roleplay",
     "turns": ["Plan a weekend trip to Rome.", "Now make the plan shorter."]},
]  # fmt: skip
BROKEN = {"question_id": 5, "category": "reasoning", "turns": ["Is it so? ALWAYS-MALFORMED"]}
GOOD = {
    1: ["A sunny beach holiday means warm sand, calm water and long lazy afternoons."],
    2: ["Two plus two is four."],
    3: ["I like mangoes, a sweet tropical fruit."],
    4: ["Day one: visit the Colosseum. Day two: walk through Trastevere.", "Colosseum, then food."],
    5: ["Yes, it is so."],
}
BAD = {k: ["zq#3 xx%% 9k;; ~~p" for _ in v] for k, v in GOOD.items()}


@pytest.fixture
def judge_api():
    standin = StandIn()
    with serve_in_thread(create_standin_app(standin), free_port()) as url:
        yield url, standin


def write_bench(tmp_path: Path, questions: list[dict]) -> Path:
    bench = tmp_path / "tiny_bench.jsonl"
    bench.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    for model, answers in (("good", GOOD), ("bad", BAD)):
        path = answer_path(str(tmp_path / "out"), str(bench), model)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            {"question_id": q["question_id"], "model_id": model,
             "choices": [{"index": 0, "turns": answers[q["question_id"]]}]}
            for q in questions
        ]  # fmt: skip
        path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return bench


def config(tmp_path: Path, bench: Path, url: str, **kwargs) -> JudgeConfig:
    return JudgeConfig(
        bench=str(bench), judge_model="stand-in", judge_api=url, out_dir=str(tmp_path / "out"),
        concurrency=4, **kwargs,
    )  # fmt: skip


def test_single_grading_retries_429_and_bad_verdicts_and_reports_what_still_failed(
    tmp_path, judge_api
):
    url, standin = judge_api
    standin.rate_limit_first = True
    bench = write_bench(tmp_path, [*QUESTIONS, BROKEN])
    report = run_judge(config(tmp_path, bench, url, parse_retries=1), progress=False)
    # 2 models x (4 one-turn-or-first-turn + 1 second turn + 1 broken) judgments
    assert report.judged == 10 and len(report.failed) == 2
    assert {r["question_id"] for r in report.failed} == {5}
    assert all("unparseable verdict" in r["error"] for r in report.failed)
    assert standin.statuses[429] == len(standin.calls)  # every prompt was rate-limited once
    assert report.retries >= standin.statuses[429]
    records = load_judgments(judgment_file(config(tmp_path, bench, url)))
    scores = {(r["model"], r["question_id"], r["turn"]): r.get("score") for r in records.values()}
    assert scores[("good", 1, 1)] > scores[("bad", 1, 1)]
    assert scores[("good", 4, 2)] is not None  # the second turn was judged on its own
    math = next(r for r in records.values() if r["question_id"] == 2)
    assert math["prompt"] == "single" and math["status"] == "ok"  # retried after MALFORMED-ONCE
    assert report.prompt_tokens > 0 and report.cost(config(tmp_path, bench, url)) is None


def test_a_second_run_makes_no_judge_calls_and_a_changed_answer_is_judged_again(
    tmp_path, judge_api
):
    url, standin = judge_api
    bench = write_bench(tmp_path, QUESTIONS)
    first = run_judge(config(tmp_path, bench, url), progress=False)
    calls = sum(standin.calls.values())
    again = run_judge(config(tmp_path, bench, url), progress=False)
    assert (again.cached, again.judged, again.calls) == (first.judged, 0, 0)
    assert sum(standin.calls.values()) == calls
    path = answer_path(str(tmp_path / "out"), str(bench), "good")
    with path.open("a", encoding="utf-8") as handle:  # a later line for question 1 wins
        handle.write(json.dumps({"question_id": 1, "choices": [{"turns": ["New text."]}]}) + "\n")
    third = run_judge(config(tmp_path, bench, url), progress=False)
    assert (third.judged, third.cached) == (1, first.judged - 1)


def test_pairwise_runs_both_orders_and_a_position_biased_verdict_becomes_a_tie(tmp_path, judge_api):
    url, _standin = judge_api
    bench = write_bench(tmp_path, QUESTIONS)
    report = run_judge(config(tmp_path, bench, url, mode="pairwise"), progress=False)
    assert report.judged == 2 * 5 and not report.failed  # 5 question-turns, two orders each
    pairwise = config(tmp_path, bench, url, mode="pairwise")
    records = list(load_judgments(judgment_file(pairwise)).values())
    orders = {(r["question_id"], r["model_a"]) for r in records}
    assert orders >= {(1, "good"), (1, "bad")}
    summary = summarize(ShowConfig(bench=str(bench), out_dir=str(tmp_path / "out"), bootstrap=50,
                                   reference="bad"))  # fmt: skip
    rate = summary.win_rates["good"]
    assert (rate.games, rate.win, rate.tie) == (5, 0.8, 0.2)  # ALWAYS-A is inconsistent: a tie
    assert summary.inconsistent["good"] == 1


def test_pairwise_baseline_needs_a_baseline():
    with pytest.raises(Exception, match="--baseline"):
        JudgeConfig(mode="pairwise-baseline")


def test_cli_judges_vicuna_style_scores_then_shows_tables_and_a_figure(tmp_path, judge_api, capsys):
    url, _standin = judge_api
    bench = write_bench(tmp_path, [*QUESTIONS, BROKEN])
    out = str(tmp_path / "out")
    common = ["--bench", str(bench), "--out-dir", out]
    judge = ["eval", "judge", *common, "--mode", "pairwise-baseline", "--baseline", "bad",
             "--pair-format", "scores", "--judge-model", "gpt-4", "--judge-api", url,
             "--parse-retries", "0", "--quiet"]  # fmt: skip
    assert main(judge) == 1  # with no parse retries, questions 2 and 5 fail in both orders
    captured = capsys.readouterr()
    assert "4 judgments failed" in captured.out
    assert "FAILED question 5" in captured.err and "FAILED question 2" in captured.err
    assert "estimated cost $" in captured.out  # gpt-4 has a known price
    figure = tmp_path / "vicuna_style.png"
    assert main(["eval", "show", *common, "--reference", "bad", "--bootstrap", "50",
                 "--figure", str(figure)]) == 0  # fmt: skip
    shown = capsys.readouterr()
    assert "Percent of bad's score" in shown.out and "LC win rate" in shown.out
    assert "4 judgments failed" in shown.out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = summarize(ShowConfig(bench=str(bench), out_dir=out, reference="bad", bootstrap=20))
    assert summary.percent_of_reference["good"] > 150
    assert summary.win_rates["good"].games == 4  # the failed ones are not counted


def test_arena_rates_the_web_demos_votes_and_counts_unusable_ones(tmp_path, capsys):
    votes = tmp_path / "votes.jsonl"
    lines = []
    for k in range(60):  # the record shape serve/web/arena.py's vote_record writes
        vote = ["a", "a", "b", "tie", "both_bad"][k % 5]
        lines.append({"tstamp": k, "vote": vote, "model_a": "vicuna", "model_b": "alpaca",
                      "conversation_a": [], "conversation_b": []})  # fmt: skip
    lines.append({"vote": "maybe", "model_a": "vicuna", "model_b": "alpaca"})
    votes.write_text("".join(json.dumps(r) + "\n" for r in lines) + "not json\n")
    figure = tmp_path / "arena.png"
    assert main(["eval", "arena", str(votes), "--bootstrap", "50", "--figure", str(figure)]) == 0
    captured = capsys.readouterr()
    assert "vicuna" in captured.out and "dropped 1 vote(s): unknown vote" in captured.err
    assert figure.read_bytes()[:4] == b"\x89PNG"
    # vicuna: 24 wins, 24 ties, 12 losses -> 60% -> 400 log10(1.5) = 70.4 points ahead
    from llm_judge.arena import bt_ratings, load_votes

    ratings = bt_ratings(load_votes(votes))
    assert ratings["vicuna"] - ratings["alpaca"] == pytest.approx(70.4, abs=0.2)
