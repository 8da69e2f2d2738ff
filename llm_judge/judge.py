"""``eval judge``: judge prompts for every (question, turn, model or pair), sent to the judge
model, verdicts parsed, each judgment appended to ``judgments/{single,pairwise}.jsonl``.

That file is also the cache: a judgment's ``key`` hashes the judge, the prompt (name and
version) and the exact question and answer texts, so a re-run only sends what changed or
failed before. Pairwise judgments are made in both orders (A/B and B/A); :mod:`llm_judge.stats`
combines them. A verdict that cannot be parsed is asked for again ``parse_retries`` times, then
written with ``status: failed`` and its reason, and reported, never scored.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastchat_lite.errors import ApiError
from fastchat_lite.io import iter_records
from fastchat_lite.openai_client import OpenAIClient
from llm_judge.config import JudgeConfig, answer_path, bench_dir
from llm_judge.errors import QuestionFileError, VerdictError
from llm_judge.prompts import PROMPT_VERSION, JudgePrompt, pair_prompt, single_prompt
from llm_judge.questions import (
    REFERENCE_CATEGORIES,
    Question,
    bench_name,
    load_answers,
    load_questions,
    load_references,
)
from llm_judge.verdicts import parse_label, parse_rating, parse_score_pair, winner_of_scores

# USD per 1M (prompt, completion) tokens, for the cost estimate; --price-* override it.
PRICES = {
    "gpt-4": (30.0, 60.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-3.5-turbo": (0.5, 1.5),
}


@dataclass(frozen=True)
class JudgeTask:
    key: str
    prompt: JudgePrompt
    verdict: str  # single, labels or scores
    meta: dict[str, Any]


@dataclass
class JudgeReport:
    path: Path
    cached: int = 0
    judged: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    missing_answers: list[str] = field(default_factory=list)
    calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0

    def cost(self, config: JudgeConfig) -> float | None:
        """Estimated USD of the tokens this run spent, or None for a judge of unknown price."""
        known = PRICES.get(config.judge_model, (None, None))
        price_in = config.price_input if config.price_input is not None else known[0]
        price_out = config.price_output if config.price_output is not None else known[1]
        if price_in is None or price_out is None:
            return None
        return (self.prompt_tokens * price_in + self.completion_tokens * price_out) / 1e6


def judgment_file(config: JudgeConfig) -> Path:
    kind = "single" if config.mode == "single" else "pairwise"  # both pairwise modes share
    return bench_dir(config.out_dir, config.bench) / "judgments" / f"{kind}.jsonl"


def cache_key(judge: str, prompt: JudgePrompt) -> str:
    text = json.dumps([judge, PROMPT_VERSION, prompt.name, prompt.messages], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def load_judgments(path: Path) -> dict[str, dict[str, Any]]:
    """key -> latest judgment record of a judgment file ({} when there is none yet)."""
    if not path.is_file():
        return {}
    records: dict[str, dict[str, Any]] = {}
    for record in iter_records(path):
        if record.error or not isinstance(record.value, dict) or "key" not in record.value:
            raise QuestionFileError(
                f"{path}: record {record.index} is not a judgment "
                f"({record.error or 'no key'}); delete the line to judge it again"
            )
        records[record.value["key"]] = record.value
    return records


# ---- building the tasks -------------------------------------------------------------------


def _models(config: JudgeConfig) -> list[str]:
    if config.models:
        return list(config.models)
    folder = bench_dir(config.out_dir, config.bench) / "answers"
    found = sorted(p.stem for p in folder.glob("*.jsonl"))
    if not found:
        raise QuestionFileError(f"{folder}: no answer files; run `fastchat-lite eval answer`")
    return found


def _pairs(config: JudgeConfig, models: list[str]) -> list[tuple[str, str]]:
    if config.mode == "pairwise-baseline":
        return [(m, config.baseline) for m in models if m != config.baseline]  # type: ignore[misc]
    return list(itertools.combinations(models, 2))


def build_tasks(config: JudgeConfig, report: JudgeReport) -> list[JudgeTask]:
    """Every judgment the mode asks for; questions a model has not answered are reported."""
    questions = load_questions(config.bench, config.question_ids or None)
    references = load_references(bench_name(config.bench), config.reference_file)
    models = _models(config)
    if config.mode == "pairwise-baseline" and config.baseline not in models:
        models.append(config.baseline)  # type: ignore[arg-type]
    answers = {}
    for model in models:
        path = answer_path(config.out_dir, config.bench, model)
        if not path.is_file():
            raise QuestionFileError(f"{path}: no answers for {model}; run `eval answer` first")
        answers[model] = load_answers(path)
    verdict = config.verdict_format(bench_name(config.bench))
    tasks = []
    for question in questions:
        qid = str(question.question_id)
        ref = references.get(qid) if question.category in REFERENCE_CATEGORIES else None
        for model in models:
            if qid not in answers[model] or len(answers[model][qid]) < len(question.turns):
                report.missing_answers.append(f"{model}: question {qid}")
        for turn in range(1, len(question.turns) + 1):
            base = {"question_id": question.question_id, "category": question.category}
            base["turn"] = turn
            if config.mode == "single":
                for model in models:
                    if _answered(answers[model], qid, question):
                        prompt = single_prompt(question.turns, answers[model][qid], turn, ref)
                        tasks.append(_task(config, prompt, "single", {**base, "model": model}))
                continue
            for first, second in _pairs(config, models):
                if not (_answered(answers[first], qid, question)
                        and _answered(answers[second], qid, question)):  # fmt: skip
                    continue
                for a, b in ((first, second), (second, first)):
                    prompt = pair_prompt(
                        verdict, question.turns, answers[a][qid], answers[b][qid], turn, ref
                    )
                    meta = {**base, "model_a": a, "model_b": b}
                    tasks.append(_task(config, prompt, verdict, meta))
    return tasks


def _answered(answers: dict[str, tuple[str, ...]], qid: str, question: Question) -> bool:
    return qid in answers and len(answers[qid]) >= len(question.turns)


def _task(config: JudgeConfig, prompt: JudgePrompt, verdict: str, meta: dict) -> JudgeTask:
    return JudgeTask(cache_key(config.judge_model, prompt), prompt, verdict, meta)


# ---- judging ------------------------------------------------------------------------------


def parse_verdict(verdict: str, text: str) -> dict[str, Any]:
    """The verdict fields of a judgment record; raises :class:`VerdictError`."""
    if verdict == "single":
        return {"score": parse_rating(text)}
    if verdict == "labels":
        return {"winner": parse_label(text)}
    score_a, score_b = parse_score_pair(text)
    return {"score_a": score_a, "score_b": score_b, "winner": winner_of_scores(score_a, score_b)}


async def judge_one(client: OpenAIClient, config: JudgeConfig, task: JudgeTask) -> dict[str, Any]:
    """One judgment record: ``status`` ok with the verdict, or failed with ``error``."""
    record: dict[str, Any] = {
        "key": task.key,
        **task.meta,
        "judge": config.judge_model,
        "prompt": task.prompt.name,
        "prompt_version": PROMPT_VERSION,
        "verdict_format": task.verdict,
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }
    problems = []
    for _attempt in range(config.parse_retries + 1):
        try:
            reply = await client.chat(
                task.prompt.messages, temperature=0.0, max_tokens=config.max_tokens
            )
        except ApiError as exc:
            problems.append(str(exc))
            break  # the client has already retried with backoff
        record["prompt_tokens"] += reply.prompt_tokens
        record["completion_tokens"] += reply.completion_tokens
        record["judgment"] = reply.text
        try:
            record.update(parse_verdict(task.verdict, reply.text))
        except VerdictError as exc:
            problems.append(f"unparseable verdict: {exc}")
            continue
        return {**record, "status": "ok", "tstamp": round(time.time(), 3)}
    return {**record, "status": "failed", "error": problems[-1], "tstamp": round(time.time(), 3)}


async def _judge_all(
    config: JudgeConfig, tasks: list[JudgeTask], report: JudgeReport, progress: bool, transport
) -> None:
    from tqdm.auto import tqdm

    limit = asyncio.Semaphore(config.concurrency)
    client = OpenAIClient(
        config.judge_api,
        config.judge_model,
        api_key=config.api_key(),
        timeout=config.timeout,
        max_retries=config.max_retries,
        transport=transport,
    )

    async def one(task: JudgeTask) -> dict[str, Any]:
        async with limit:
            return await judge_one(client, config, task)

    report.path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(tasks), desc=f"judge {config.judge_model}", unit="j", disable=not progress)
    async with client:
        with report.path.open("a", encoding="utf-8") as handle, bar:
            for next_done in asyncio.as_completed([one(t) for t in tasks]):
                record = await next_done
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                bar.update()
                report.prompt_tokens += record["prompt_tokens"]
                report.completion_tokens += record["completion_tokens"]
                if record["status"] == "ok":
                    report.judged += 1
                else:
                    report.failed.append(record)
    report.calls, report.retries = client.usage.calls, client.usage.retries


def run_judge(config: JudgeConfig, *, progress: bool = True, transport: Any = None) -> JudgeReport:
    """Judge what is not in the cache yet; failed judgments are tried again on every run."""
    report = JudgeReport(judgment_file(config))
    tasks = build_tasks(config, report)
    cached = load_judgments(report.path)
    todo = []
    for task in tasks:
        hit = cached.get(task.key)
        if hit is not None and hit.get("status") == "ok":
            report.cached += 1
            report.cached_prompt_tokens += int(hit.get("prompt_tokens", 0))
            report.cached_completion_tokens += int(hit.get("completion_tokens", 0))
        else:
            todo.append(task)
    if todo:
        asyncio.run(_judge_all(config, todo, report, progress, transport))
    return report


def describe_failure(record: dict[str, Any]) -> str:
    who = record.get("model") or f"{record.get('model_a')} vs {record.get('model_b')}"
    return f"question {record['question_id']} turn {record['turn']} ({who}): {record['error']}"
