"""``data generate``: the loop that asks the teacher for batches and keeps the good tasks.

Up to ``--concurrency`` requests are in flight; each reply is parsed, filtered and scored
against the pool on the event loop, one reply at a time, so the pool and the counters need no
lock and a reply sees every task accepted before it. Accepted tasks go to ``OUT`` (Alpaca or
ShareGPT records) and the journal beside it (journal.py), so a killed run resumes where it was.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_prep.drops import DropLog, Tally
from data_prep.generate.filters import RejectReason, blacklist_pattern, check_task
from data_prep.generate.journal import Journal, Progress
from data_prep.generate.parse import Rejected, parse_reply
from data_prep.generate.prompts import LABELS, build_prompt, completion_reply_prefix
from data_prep.generate.similarity import SimilarityIndex
from data_prep.generate.tasks import Task, load_seed_tasks
from fastchat_lite.errors import FastChatLiteError

if TYPE_CHECKING:  # the client (httpx) is imported when a run starts, not for --help
    from fastchat_lite.openai_client import Completion, OpenAIClient

LANGS = ("en", "zh")
API_MODES = ("chat", "completion")


@dataclass
class GenerateConfig:
    """Options of ``fastchat-lite data generate``."""

    api: str = field(default="", metadata={"help": "teacher base URL (OpenAI-compatible, /v1)"})
    model: str = field(default="", metadata={"help": "teacher model name"})
    api_key: str | None = field(
        default=None, metadata={"help": "bearer token (default: $OPENAI_API_KEY if set)"}
    )
    num: int = field(default=100, metadata={"help": "accepted tasks to reach in OUT"})
    seed_tasks: str | None = field(
        default=None,
        metadata={"help": "seed tasks: alpaca, belle or a JSON/JSONL file (default: by --lang)"},
    )
    lang: str = field(default="en", metadata={"help": "prompt language", "choices": list(LANGS)})
    api_mode: str = field(
        default="chat",
        metadata={"help": "/chat/completions or /completions", "choices": list(API_MODES)},
    )
    sharegpt: bool = field(
        default=False, metadata={"help": "write ShareGPT conversations (train-ready)"}
    )
    prompt_tasks: int = field(default=3, metadata={"help": "example tasks shown per request"})
    prompt_generated: int = field(
        default=1, metadata={"help": "of those, how many from accepted tasks (once any exist)"}
    )
    tasks_per_request: int = field(default=17, metadata={"help": "new tasks asked per request"})
    concurrency: int = field(default=4, metadata={"help": "requests in flight at once"})
    temperature: float = field(default=1.0, metadata={"help": "teacher sampling temperature"})
    top_p: float = field(default=1.0, metadata={"help": "teacher nucleus sampling"})
    max_tokens: int = field(default=3072, metadata={"help": "token limit of one reply"})
    similarity_threshold: float = field(
        default=0.7, metadata={"help": "reject when ROUGE-L to the pool is above this"}
    )
    min_words: int = field(default=4, metadata={"help": "shortest instruction (CJK: chars)"})
    max_words: int = field(default=150, metadata={"help": "longest instruction"})
    blacklist: list[str] = field(
        default_factory=list, metadata={"help": "more words that reject an instruction"}
    )
    max_requests: int = field(
        default=0, metadata={"help": "stop after this many requests (0: 10x what --num needs)"}
    )
    max_retries: int = field(default=6, metadata={"help": "retries of a failing request"})
    seed: int = field(default=0, metadata={"help": "sampling of example tasks"})
    id_prefix: str = field(default="selfinstruct_", metadata={"help": "ShareGPT record ids"})


def journal_settings(config: GenerateConfig) -> dict[str, Any]:
    """What must stay the same for a run to resume another's ``OUT``."""
    return {"lang": config.lang, "sharegpt": config.sharegpt, "id_prefix": config.id_prefix}


class Generation:
    """One run: the pool, the counters, the journal; :meth:`absorb` takes one reply."""

    def __init__(self, config: GenerateConfig, journal: Journal, drops: DropLog) -> None:
        self.config = config
        self.journal = journal
        self.drops = drops
        self.seeds = load_seed_tasks(config.seed_tasks, config.lang)
        progress = journal.open()
        self.generated: list[Task] = list(progress.accepted)
        self.pool = SimilarityIndex(config.similarity_threshold, cjk=config.lang == "zh")
        self.pool.add([task.instruction for task in self.seeds])
        self.pool.add([task.instruction for task in self.generated])
        self.blacklist = blacklist_pattern(config.lang, config.blacklist)
        self.requests_started = progress.requests
        self.on_commit: Any = None  # called after each reply (the progress bar)
        self._restore(progress)

    def _restore(self, progress: Progress) -> None:
        tally = self.drops.tally
        tally.read, tally.kept = progress.tasks_seen, len(progress.accepted)
        for item in progress.rejected:
            self.drops.drop(item["index"], None, item["reason"], item["detail"])
        tally.notes.update(
            seed_tasks=len(self.seeds),
            requests=progress.requests,
            prompt_tokens=progress.prompt_tokens,
            completion_tokens=progress.completion_tokens,
            over_target=progress.over_target,
        )

    @property
    def done(self) -> bool:
        return self.drops.tally.kept >= self.config.num

    def max_requests(self) -> int:
        needed = math.ceil(self.config.num / max(1, self.config.tasks_per_request))
        return self.config.max_requests or 10 * needed + 10

    def next_prompt(self) -> tuple[str, int] | None:
        """(prompt, number of its first new task); None when done or out of requests."""
        if self.done or self.requests_started >= self.max_requests():
            return None
        config = self.config
        rng = random.Random(f"{config.seed}:{self.requests_started}")  # same after a resume
        self.requests_started += 1
        k_gen = min(config.prompt_generated, len(self.generated), config.prompt_tasks)
        k_seed = min(config.prompt_tasks - k_gen, len(self.seeds))
        examples = rng.sample(self.seeds, k_seed) + rng.sample(self.generated, k_gen)
        prompt = build_prompt(examples, config.tasks_per_request, config.lang, config.api_mode)
        return prompt, len(examples) + 1

    def _screen(self, reply: Completion, first: int) -> list[Task | Rejected]:
        """The reply's pieces in order: tasks that pass the checks before similarity, and a
        :class:`Rejected` for everything else."""
        config = self.config
        completion = config.api_mode == "completion"
        prefix = completion_reply_prefix(first, config.lang) if completion else ""
        items = parse_reply(reply.text, reply.finish_reason, prefix).items
        for n, item in enumerate(items):
            if isinstance(item, Task):
                failed = check_task(
                    item, config.lang, self.blacklist, config.min_words, config.max_words
                )
                if failed:
                    items[n] = Rejected(failed[0], failed[1], item.instruction)
        return items

    def absorb(self, reply: Completion, first: int) -> None:
        """Parse, filter and score one reply; append what it adds to ``OUT`` and the journal."""
        items: list[Task | Rejected | None] = list(self._screen(reply, first))
        candidates = [(n, item) for n, item in enumerate(items) if isinstance(item, Task)]
        decisions = self.pool.check_and_add([task.instruction for _, task in candidates])
        room = self.config.num - self.drops.tally.kept
        for (n, task), (ok, match) in zip(candidates, decisions, strict=True):
            if ok:
                items[n] = task if room > 0 else None  # None: over the target, not written
                room -= 1
                continue
            reason = RejectReason.DUPLICATE if match.score == 1.0 else RejectReason.SIMILAR
            closest = self.pool.texts[match.index] if match.index is not None else ""
            detail = f"ROUGE-L {match.score:.3f} to {closest[:200]!r}"
            items[n] = Rejected(reason, detail, task.instruction)
        self._commit([item for item in items if item is not None], items.count(None), reply)

    def _commit(self, outcomes: list[Task | Rejected], over_target: int, reply: Completion) -> None:
        """``outcomes`` in reply order: the report index of each is its position in the run."""
        tally, notes = self.drops.tally, self.drops.tally.notes
        accepted = [item for item in outcomes if isinstance(item, Task)]
        lines = [json.dumps(self._record(task, tally.kept + n), ensure_ascii=False) + "\n"
                 for n, task in enumerate(accepted)]  # fmt: skip
        entries = [
            {"index": tally.read + n, "reason": str(item.reason),
             "detail": f"{item.detail}; text: {item.text[:300]!r}"}
            for n, item in enumerate(outcomes)
            if isinstance(item, Rejected)
        ]  # fmt: skip
        self.journal.commit(
            lines,
            {
                "accepted": [task.to_alpaca() for task in accepted],
                "rejected": entries,
                "over_target": over_target,
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
            },
        )
        for entry in entries:
            self.drops.drop(entry["index"], None, entry["reason"], entry["detail"])
        tally.read += len(outcomes)
        tally.kept += len(accepted)
        self.generated.extend(accepted)
        notes["requests"] += 1
        notes["prompt_tokens"] += reply.prompt_tokens
        notes["completion_tokens"] += reply.completion_tokens
        notes["over_target"] += over_target
        if self.on_commit is not None:
            self.on_commit(len(accepted))

    def _record(self, task: Task, n: int) -> dict[str, Any]:
        if self.config.sharegpt:
            return task.to_sharegpt(f"{self.config.id_prefix}{n}")
        return task.to_alpaca()


async def _ask_teacher(
    client: OpenAIClient, mode: str, prompt: str, sampling: dict[str, Any]
) -> Completion:
    """``prompt`` as the user's message (chat mode) or as text to continue (completion mode)."""
    if mode == "chat":
        return await client.chat([{"role": "user", "content": prompt}], **sampling)
    return await client.complete(prompt, **sampling)


async def _ask_until_done(generation: Generation, client: OpenAIClient) -> None:
    config = generation.config
    stop = [f"### {LABELS[config.lang].task} {config.prompt_tasks + config.tasks_per_request + 1}"]
    sampling = {"temperature": config.temperature, "top_p": config.top_p}
    sampling.update(max_tokens=config.max_tokens, stop=stop)

    async def worker() -> None:
        while (next_prompt := generation.next_prompt()) is not None:
            prompt, first = next_prompt
            reply = await _ask_teacher(client, config.api_mode, prompt, sampling)
            generation.absorb(reply, first)

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, config.concurrency))]
    try:
        await asyncio.gather(*workers)
    finally:  # one failed: stop the others (what they committed stays in the journal)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def generate_file(
    out_path: str | Path,
    config: GenerateConfig,
    drops: DropLog,
    *,
    progress: bool = True,
    transport: Any = None,
) -> Tally:
    """Grow ``out_path`` to ``config.num`` accepted tasks (resuming from its journal).

    Raises :class:`~fastchat_lite.errors.ApiError` when the teacher refuses or keeps failing
    (what was accepted before stays; run again to resume), :class:`ResumeError`,
    :class:`SeedTaskError`.
    """
    from tqdm import tqdm

    from fastchat_lite.openai_client import OpenAIClient

    if not config.api or not config.model:
        raise FastChatLiteError("data generate needs --api URL and --model NAME (the teacher)")
    journal = Journal(out_path, journal_settings(config))
    generation = Generation(config, journal, drops)
    tally = drops.tally
    bar = tqdm(total=config.num, initial=tally.kept, desc="generate", unit=" task",
               disable=None if progress else True, file=sys.stderr)  # fmt: skip

    def show(_accepted: int) -> None:
        notes = tally.notes
        bar.update(tally.kept - bar.n)
        bar.set_postfix(rejected=sum(tally.dropped.values()), requests=notes["requests"],
                        tokens=notes["prompt_tokens"] + notes["completion_tokens"])  # fmt: skip

    generation.on_commit = show
    api_key = config.api_key or os.environ.get("OPENAI_API_KEY")
    client = OpenAIClient(
        config.api,
        config.model,
        api_key=api_key,
        timeout=300.0,  # a batch of 17 tasks is a long reply
        max_retries=config.max_retries,
        max_backoff=60.0,
        transport=transport,
    )
    try:
        asyncio.run(_run_client(generation, client))
    finally:
        bar.close()
        journal.close()
    if not generation.done:
        tally.notes["warning"] = (
            f"stopped after {tally.notes['requests']} requests (--max-requests) with "
            f"{tally.kept} of {config.num} tasks; run again to go on"
        )
    return tally


async def _run_client(generation: Generation, client: OpenAIClient) -> None:
    async with client:
        await _ask_until_done(generation, client)
