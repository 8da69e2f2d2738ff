"""``eval answer``: every question of a bench asked of a model through its OpenAI-compatible API.

Multi-turn questions are asked turn by turn, each turn seeing the model's earlier answers.
Answers are appended to ``answers/MODEL.jsonl`` as they finish (one flushed line each), so an
interrupted run resumes where it stopped: answered questions are skipped. A question whose
request fails is reported with the reason and not written, so the next run retries it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fastchat_lite.errors import ApiError
from fastchat_lite.openai_client import OpenAIClient
from llm_judge.config import AnswerConfig, answer_path
from llm_judge.questions import Question, load_answers, load_questions


@dataclass
class AnswerReport:
    model: str
    path: Path
    answered: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (question_id, reason)
    prompt_tokens: int = 0
    completion_tokens: int = 0


def answer_record(question: Question, model: str, turns: list[str]) -> dict[str, Any]:
    """FastChat's answer format, so its tools and ours read each other's files."""
    return {
        "question_id": question.question_id,
        "answer_id": uuid.uuid4().hex,
        "model_id": model,
        "choices": [{"index": 0, "turns": turns}],
        "tstamp": round(time.time(), 3),
    }


async def answer_question(
    client: OpenAIClient, question: Question, config: AnswerConfig
) -> list[str]:
    """The answer of ``client.model`` to every turn; turn ``i`` sees the question's turns and
    answers before it."""
    temperature = question.temperature if config.temperature is None else config.temperature
    messages: list[dict[str, str]] = []
    answers: list[str] = []
    for turn in question.turns:
        messages.append({"role": "user", "content": turn})
        reply = await client.chat(messages, temperature=temperature, max_tokens=config.max_tokens)
        answers.append(reply.text.strip())
        messages.append({"role": "assistant", "content": answers[-1]})
    return answers


def _append(handle: IO[str], record: dict[str, Any]) -> None:
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


async def answer_model(
    model: str,
    api: str,
    api_key: str | None,
    questions: list[Question],
    config: AnswerConfig,
    *,
    progress: bool = True,
    transport: Any = None,
) -> AnswerReport:
    """Answer the questions ``model`` has not answered yet in its answer file."""
    from tqdm.auto import tqdm

    path = answer_path(config.out_dir, config.bench, model)
    done = load_answers(path) if path.is_file() else {}
    report = AnswerReport(model, path)
    todo = [q for q in questions if str(q.question_id) not in done]
    report.skipped = len(questions) - len(todo)
    if not todo:
        return report
    path.parent.mkdir(parents=True, exist_ok=True)
    limit = asyncio.Semaphore(config.concurrency)
    client = OpenAIClient(
        api,
        model,
        api_key=api_key,
        timeout=config.timeout,
        max_retries=config.max_retries,
        transport=transport,
    )

    async def one(question: Question) -> tuple[Question, list[str] | str]:
        async with limit:
            try:
                return question, await answer_question(client, question, config)
            except ApiError as exc:
                return question, str(exc)

    bar = tqdm(total=len(todo), desc=f"answers {model}", unit="q", disable=not progress)
    async with client:
        with path.open("a", encoding="utf-8") as handle, bar:
            for next_done in asyncio.as_completed([one(q) for q in todo]):
                question, result = await next_done
                bar.update()
                if isinstance(result, str):
                    report.failed.append((str(question.question_id), result))
                    continue
                _append(handle, answer_record(question, model, result))
                report.answered += 1
    report.prompt_tokens = client.usage.prompt_tokens
    report.completion_tokens = client.usage.completion_tokens
    return report


def run_answers(config: AnswerConfig, *, progress: bool = True) -> list[AnswerReport]:
    """Answer the bench with every ``--model``; one report per model."""
    endpoints = config.endpoints()
    questions = load_questions(config.bench, config.question_ids or None)

    async def main() -> list[AnswerReport]:
        jobs = (answer_model(*e, questions, config, progress=progress) for e in endpoints)
        return list(await asyncio.gather(*jobs))

    return asyncio.run(main())
