"""Benchmarks as data: the bundled question files, reference answers, per-category temperatures,
and the answer-file format shared by model answers and reference answers.

A question is ``{question_id, category, turns: [str, ...]}``; an answer record is FastChat's
``{question_id, model_id, choices: [{index, turns: [str, ...]}], ...}`` so their files can be
read here unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastchat_lite.io import iter_records
from llm_judge.errors import QuestionFileError

BUNDLED = {
    "vicuna": "vicuna_bench_questions.jsonl",
    "mt_bench": "mt_bench_questions.jsonl",
}
REFERENCE_FILES = {"mt_bench": "mt_bench_reference_gpt4.jsonl"}

# MT-Bench's sampling temperatures: creative categories sample, exact ones decode greedily.
CATEGORY_TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
DEFAULT_TEMPERATURE = 0.7  # categories MT-Bench does not name (Vicuna's generic, fermi, ...)

# Categories graded against a reference answer: the judge alone misgrades them too often.
REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding"})


@dataclass(frozen=True)
class Question:
    question_id: int | str
    category: str
    turns: tuple[str, ...]

    @property
    def temperature(self) -> float:
        return CATEGORY_TEMPERATURE.get(self.category, DEFAULT_TEMPERATURE)


def data_path(name: str) -> Path:
    """Path of a file bundled in ``llm_judge/data``."""
    return Path(str(resources.files("llm_judge") / "data" / name))


def bench_name(bench: str) -> str:
    """``vicuna`` / ``mt_bench`` as given; a file's stem otherwise (names output folders)."""
    return bench if bench in BUNDLED else Path(bench).stem


def bench_path(bench: str) -> Path:
    """The question file of a bundled bench, or ``bench`` itself as a path."""
    if bench in BUNDLED:
        return data_path(BUNDLED[bench])
    path = Path(bench)
    if not path.is_file():
        raise QuestionFileError(
            f"{bench}: no such question file; use --bench {' or '.join(BUNDLED)} or a JSONL path"
        )
    return path


def _question(value: Any, where: str) -> Question:
    if not isinstance(value, dict):
        raise QuestionFileError(f"{where}: expected an object with question_id, category, turns")
    turns = value.get("turns")
    if "question_id" not in value or not isinstance(turns, list) or not turns:
        raise QuestionFileError(f"{where}: needs 'question_id' and a non-empty list 'turns'")
    if not all(isinstance(t, str) and t.strip() for t in turns):
        raise QuestionFileError(f"{where}: every turn must be a non-empty string")
    return Question(value["question_id"], str(value.get("category", "general")), tuple(turns))


def load_questions(bench: str, ids: list[str] | None = None) -> list[Question]:
    """Questions of ``bench`` in file order, optionally only those whose id is in ``ids``.

    Raises :class:`QuestionFileError` naming the record for a bad or duplicated question.
    """
    path = bench_path(bench)
    questions: list[Question] = []
    seen: set[str] = set()
    for record in iter_records(path):
        where = f"{path}: record {record.index}"
        if record.error:
            raise QuestionFileError(f"{where}: {record.error}")
        question = _question(record.value, where)
        if str(question.question_id) in seen:
            raise QuestionFileError(f"{where}: question_id {question.question_id} is repeated")
        seen.add(str(question.question_id))
        questions.append(question)
    if ids:
        wanted = {str(i) for i in ids}
        missing = sorted(wanted - seen)
        if missing:
            raise QuestionFileError(f"{path}: no question with id {', '.join(missing)}")
        questions = [q for q in questions if str(q.question_id) in wanted]
    return questions


def answer_turns(record: Any, where: str) -> tuple[str, ...]:
    """The answer turns of one answer record (first choice)."""
    try:
        turns = record["choices"][0]["turns"]
    except (TypeError, KeyError, IndexError):
        raise QuestionFileError(f"{where}: expected choices[0].turns (a list of strings)") from None
    if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
        raise QuestionFileError(f"{where}: choices[0].turns must be a list of strings")
    return tuple(turns)


def load_answers(path: str | Path) -> dict[str, tuple[str, ...]]:
    """question_id (as a string) -> answer turns, from an answer JSONL; a later line wins."""
    answers: dict[str, tuple[str, ...]] = {}
    for record in iter_records(path):
        where = f"{path}: record {record.index}"
        if record.error:
            raise QuestionFileError(f"{where}: {record.error}")
        if not isinstance(record.value, dict) or "question_id" not in record.value:
            raise QuestionFileError(f"{where}: expected an answer with a question_id")
        answers[str(record.value["question_id"])] = answer_turns(record.value, where)
    return answers


def load_references(bench: str, path: str | None = None) -> dict[str, tuple[str, ...]]:
    """Reference answers for reference-guided grading: ``path``, or the bundled file for the
    bench ({} when it has none)."""
    if path:
        return load_answers(path)
    if bench in REFERENCE_FILES:
        return load_answers(data_path(REFERENCE_FILES[bench]))
    return {}
