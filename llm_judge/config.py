"""One config dataclass per ``eval`` subcommand: the source of its flags, YAML keys and defaults.

Files live under ``OUT_DIR/BENCH/``: ``answers/MODEL.jsonl`` from ``eval answer``,
``judgments/MODE.jsonl`` from ``eval judge`` (also the judgment cache), and the figure from
``eval show``. Kept free of heavy imports so ``fastchat-lite --help`` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fastchat_lite.errors import FastChatLiteError

MODES = ("single", "pairwise", "pairwise-baseline")
PAIR_FORMATS = ("auto", "scores", "labels")
DEFAULT_OUT_DIR = "eval"


def safe_name(name: str) -> str:
    """A model or judge name as a file name (``org/model`` -> ``org--model``)."""
    return name.replace("/", "--").replace(os.sep, "--")


@dataclass
class AnswerConfig:
    bench: str = field(
        default="mt_bench", metadata={"help": "vicuna, mt_bench, or a question JSONL file"}
    )
    model: list[str] = field(
        default_factory=list, metadata={"help": "model name(s) to ask, as the API lists them"}
    )
    api: list[str] = field(
        default_factory=list,
        metadata={"help": "OpenAI-compatible base URL(s): one for every model, or one per model"},
    )
    api_key: list[str] = field(
        default_factory=list, metadata={"help": "API key(s): one for all, or one per --api"}
    )
    out_dir: str = field(default=DEFAULT_OUT_DIR, metadata={"help": "folder for eval outputs"})
    question_ids: list[str] = field(
        default_factory=list, metadata={"help": "answer only these question ids"}
    )
    max_tokens: int = field(default=1024, metadata={"help": "longest answer per turn, in tokens"})
    temperature: float | None = field(
        default=None, metadata={"help": "one temperature for all (default: per category)"}
    )
    concurrency: int = field(default=8, metadata={"help": "requests in flight per model"})
    max_retries: int = field(default=5, metadata={"help": "retries on 429/5xx/network errors"})
    timeout: float = field(default=300.0, metadata={"help": "seconds per request"})

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise FastChatLiteError("--concurrency must be at least 1")

    def endpoints(self) -> list[tuple[str, str, str | None]]:
        """(model, api, key) per model; raises naming the flag when the lists do not pair up."""
        if not self.model or not self.api:
            raise FastChatLiteError("eval answer needs --model NAME [NAME ...] and --api URL")
        apis = _pair_up(self.api, len(self.model), "--api", "--model")
        keys = _pair_up(self.api_key or [""], len(self.model), "--api-key", "--model")
        return [(m, a, k or None) for m, a, k in zip(self.model, apis, keys, strict=True)]


def _pair_up(values: list[str], n: int, flag: str, other: str) -> list[str]:
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise FastChatLiteError(f"give {flag} once, or once per {other} ({n}), not {len(values)}")
    return values


@dataclass
class JudgeConfig:
    bench: str = field(
        default="mt_bench", metadata={"help": "vicuna, mt_bench, or a question JSONL file"}
    )
    mode: str = field(
        default="single",
        metadata={
            "help": "single: a 1-10 score per answer; pairwise: every pair of --models; "
            "pairwise-baseline: each model against --baseline",
            "choices": list(MODES),
        },
    )
    judge_model: str = field(default="gpt-4", metadata={"help": "judge model name"})
    judge_api: str = field(
        default="https://api.openai.com/v1", metadata={"help": "judge's OpenAI-compatible URL"}
    )
    judge_api_key: str | None = field(
        default=None, metadata={"help": "judge API key (default: $OPENAI_API_KEY)"}
    )
    models: list[str] = field(
        default_factory=list, metadata={"help": "models to judge (default: every answer file)"}
    )
    baseline: str | None = field(
        default=None, metadata={"help": "the model every other one faces in pairwise-baseline"}
    )
    pair_format: str = field(
        default="auto",
        metadata={
            "help": "pairwise verdict: scores (Vicuna's two 1-10 scores), labels ([[A]]/[[B]]/"
            "[[C]]); auto: scores for the vicuna bench, labels otherwise",
            "choices": list(PAIR_FORMATS),
        },
    )
    reference_file: str | None = field(
        default=None,
        metadata={"help": "reference answers for math/reasoning/coding (default: bundled)"},
    )
    out_dir: str = field(default=DEFAULT_OUT_DIR, metadata={"help": "folder for eval outputs"})
    question_ids: list[str] = field(
        default_factory=list, metadata={"help": "judge only these question ids"}
    )
    max_tokens: int = field(default=1024, metadata={"help": "longest judge reply, in tokens"})
    concurrency: int = field(default=8, metadata={"help": "judge requests in flight"})
    max_retries: int = field(default=5, metadata={"help": "retries on 429/5xx/network errors"})
    parse_retries: int = field(
        default=2, metadata={"help": "new calls when a verdict cannot be parsed"}
    )
    timeout: float = field(default=300.0, metadata={"help": "seconds per request"})
    price_input: float | None = field(
        default=None, metadata={"help": "USD per 1M prompt tokens (default: known judges)"}
    )
    price_output: float | None = field(
        default=None, metadata={"help": "USD per 1M completion tokens (default: known judges)"}
    )

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise FastChatLiteError("--concurrency must be at least 1")
        if self.mode == "pairwise-baseline" and not self.baseline:
            raise FastChatLiteError("--mode pairwise-baseline needs --baseline MODEL")

    def api_key(self) -> str | None:
        return self.judge_api_key or os.environ.get("OPENAI_API_KEY")

    def verdict_format(self, bench: str) -> str:
        """single, scores or labels: what the judge is asked to write."""
        if self.mode == "single":
            return "single"
        if self.pair_format != "auto":
            return self.pair_format
        return "scores" if bench == "vicuna" else "labels"


@dataclass
class ShowConfig:
    bench: str = field(
        default="mt_bench", metadata={"help": "vicuna, mt_bench, or a question JSONL file"}
    )
    out_dir: str = field(default=DEFAULT_OUT_DIR, metadata={"help": "folder for eval outputs"})
    judge_model: str | None = field(
        default=None, metadata={"help": "whose judgments to show (default: the only judge)"}
    )
    reference: str | None = field(
        default=None,
        metadata={"help": "model that win rates and 'percent of reference' compare against"},
    )
    bootstrap: int = field(
        default=1000, metadata={"help": "bootstrap rounds for the 95 percent intervals"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the bootstrap"})
    figure: str | None = field(
        default=None, metadata={"help": "PNG to write (default: OUT_DIR/BENCH/summary.png)"}
    )


@dataclass
class ArenaConfig:
    bootstrap: int = field(
        default=1000, metadata={"help": "bootstrap rounds for the 95 percent intervals"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the bootstrap"})
    figure: str | None = field(
        default=None, metadata={"help": "PNG to write (default: beside the votes file)"}
    )


def bench_dir(out_dir: str, bench: str) -> Path:
    from llm_judge.questions import bench_name

    return Path(out_dir) / bench_name(bench)


def answer_path(out_dir: str, bench: str, model: str) -> Path:
    return bench_dir(out_dir, bench) / "answers" / f"{safe_name(model)}.jsonl"
