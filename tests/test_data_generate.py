"""``data generate``: parsing batched replies, every filter, the ROUGE-L pool against
rouge-score (what Alpaca used), the teacher client, resume, and the CLI against a stand-in
teacher served on loopback (chat and completion routes)."""

from __future__ import annotations

import contextlib
import json
import random
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from data_prep.generate.filters import RejectReason, blacklist_pattern, check_task
from data_prep.generate.journal import journal_path
from data_prep.generate.parse import parse_reply
from data_prep.generate.prompts import build_prompt, completion_reply_prefix, format_task
from data_prep.generate.similarity import (
    SimilarityIndex,
    cjk_tokens,
    rouge_l,
    rouge_tokens,
)
from data_prep.generate.tasks import Task, load_seed_tasks
from fastchat_lite.cli import main
from fastchat_lite.errors import ApiError
from fastchat_lite.openai_client import OpenAIClient
from fastchat_lite.processes import free_port

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
fastapi = pytest.importorskip("fastapi")
Request = fastapi.Request  # at module level: the routes' annotations are resolved here

SEED_EN = "Is there anything I can eat for a breakfast that doesn't include eggs, yet includes protein, and has roughly 700-1000 calories?"  # noqa: E501
NEAR_EN = "Is there anything I could eat for breakfast that does not include eggs, yet includes protein, and has roughly 700-1000 calories?"  # noqa: E501


def task_block(n: int, instruction: str, task_input: str = "<none>", output: str = "Sure.") -> str:
    return f"### Task {n}\nInstruction: {instruction}\nInput: {task_input}\nOutput: {output}\n"


# One English batch with one task of every outcome, in order. The last one is cut.
CANNED_EN = "\n".join(
    [
        "Here are the new tasks.\n",
        task_block(4, "Explain why the sky looks blue on a clear day.", output="Rayleigh."),
        task_block(5, SEED_EN),  # a seed task again: duplicate
        task_block(6, NEAR_EN),  # the seed reworded: similar
        task_block(7, "Explain why the sky looks blue on a clear day today."),  # like task 4
        "### Task 8\nInput: an input without its instruction\nOutput: x\n",  # invalid_format
        task_block(9, "Describe the image below in three sentences."),  # blacklisted
        task_block(10, "Say hi."),  # too_short
        task_block(11, "Explain " + "very " * 150 + "carefully."),  # too_long
        task_block(12, '"Quoted" instructions should not start a task like this.'),
        task_block(13, "Summarize the paragraph in one sentence.", "The council met on Monday."),
        "### Task 14\nInstruction: Write a haiku about autumn leaves\nInput: <none>\nOutput: Red",
    ]
)
CANNED_EN_OUTCOMES = {
    "kept": 2,
    "duplicate": 1,
    "similar": 2,
    "invalid_format": 1,
    "blacklisted": 1,
    "too_short": 1,
    "too_long": 1,
    "non_text_start": 1,
    "truncated": 1,
}

# A completion-mode reply continues "### 任务 4\n指令：" (the prompt's end).
CANNED_ZH = """请解释为什么晴朗的白天天空是蓝色的。
输入：<无>
输出：阳光中的蓝光被空气分子散射得更多。

### 任务 5
指令：给出下面词语的同义词
输入：高兴
输出：快乐

### 任务 6
指令：请给出下面这个词语的同义词
输入：开心
输出：高兴

### 任务 7
指令：根据这张图片写一段描述。
输入：<无>
输出：无法完成。

### 任务 8
指令：“引号”开头的指令不应该被接受，对吧？
输入：<无>
输出：对。
"""


# --- the stand-in teacher ----------------------------------------------------------------


class Teacher:
    """Canned replies in order (a dict: text + finish_reason, or an HTTP status), then the
    ``fallback(n)`` text for request n when given; every request body is recorded."""

    def __init__(self, replies=(), fallback=None) -> None:
        self.replies = deque(replies)
        self.fallback = fallback
        self.requests: list[tuple[str, dict]] = []

    def next_reply(self) -> dict:
        if self.replies:
            return self.replies.popleft()
        if self.fallback is None:
            return {"text": "", "finish_reason": "stop"}
        return {"text": self.fallback(len(self.requests)), "finish_reason": "stop"}

    def app(self):
        from fastapi.responses import JSONResponse

        app = fastapi.FastAPI()

        async def answer(route: str, request: Request):
            body = await request.json()
            self.requests.append((route, body))
            reply = self.next_reply()
            if "status" in reply:
                error = {"error": {"message": "slow down", "type": "rate_limit"}}
                return JSONResponse(error, reply["status"], headers={"Retry-After": "0"})
            if route == "chat":
                choice = {"message": {"role": "assistant", "content": reply["text"]}}
            else:
                choice = {"text": reply["text"]}
            choice.update(index=0, finish_reason=reply["finish_reason"])
            usage = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
            return {"id": "x", "model": body["model"], "choices": [choice], "usage": usage}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            return await answer("chat", request)

        @app.post("/v1/completions")
        async def completions(request: Request):
            return await answer("completion", request)

        return app


@contextlib.contextmanager
def serving(teacher: Teacher) -> Iterator[str]:
    from judge_fixtures import serve_in_thread

    with serve_in_thread(teacher.app(), free_port()) as url:
        yield url


def generate(url: str, out: Path, *extra: str) -> int:
    argv = ["data", "generate", "--api", url, "--model", "teacher", "-o", str(out), "--quiet"]
    return main([*argv, "--concurrency", "1", *extra])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- similarity ---------------------------------------------------------------------------

WORDS = ["the", "a", "of", "to", "write", "give", "list", "three", "ways", "explain", "how", "why",
         "story", "poem", "make", "good", "best"]  # fmt: skip


def random_instruction(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(0, 14))]
    return " ".join(w.upper() if rng.random() < 0.1 else w for w in words) + rng.choice(".?!")


def test_pair_scores_are_rouge_scores_rougeL_fmeasure_to_the_last_bit():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(0)
    pairs = [(random_instruction(rng), random_instruction(rng)) for _ in range(2000)]
    pairs += [
        ("Write a poem, about café life!", "write a POEM about cafe life"),
        ("Give 3 tips (for 2024).", "give 3 tips for 2024"),
        ("Kelvin: 5 \u212a", "kelvin 5 k"),  # the Kelvin sign lowercases to an ASCII k
        ("", "anything"),
        ("!!!", "???"),
    ]
    for new, old in pairs:
        expected = scorer.score(new, old)["rougeL"].fmeasure  # new = target, as Alpaca
        assert rouge_l(new, old) == expected, (new, old)


def test_pool_rejects_exactly_what_alpacas_loop_rejects():
    """Alpaca's loop: each new instruction against every earlier kept one, rouge-score's
    _score_lcs, reject if the max F is above 0.7. Ours checks batches (in-batch included)."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(1)
    seeds = [random_instruction(rng) for _ in range(30)]
    new = []
    for _ in range(400):  # reworded pool entries, so that both outcomes happen often
        words = rng.choice(seeds + new).split() if rng.random() < 0.5 else []
        if words:
            words[rng.randrange(len(words))] = rng.choice(WORDS)
        new.append(" ".join(words) if words else random_instruction(rng))
    kept_tokens = [scorer._tokenizer.tokenize(text) for text in seeds]
    expected = []
    for text in new:
        tokens = scorer._tokenizer.tokenize(text)
        scores = [rouge_scorer._score_lcs(tokens, old).fmeasure for old in kept_tokens]
        expected.append(not scores or max(scores) <= 0.7)
        if expected[-1]:
            kept_tokens.append(tokens)
    pool = SimilarityIndex(0.7)
    pool.add(seeds)
    ours = []
    for start in range(0, len(new), 7):
        ours += [ok for ok, _ in pool.check_and_add(new[start : start + 7])]
    assert ours == expected
    assert 50 < sum(ours) < 350  # both decisions are exercised


def test_identical_chinese_text_scores_one_where_rouge_score_gives_zero():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    text = "给出下面词语的同义词"
    assert scorer.score(text, text)["rougeL"].fmeasure == 0.0  # why BELLE left ROUGE
    assert rouge_l(text, text, cjk=True) == 1.0
    assert rouge_l("请给出下面这个词语的同义词", text, cjk=True) > 0.7
    assert rouge_l("把这段话翻译成英文", text, cjk=True) < 0.3
    assert cjk_tokens("用Python写一个函数") == ["用", "python", "写", "一", "个", "函", "数"]


def test_cjk_tokens_equal_rouge_tokens_on_text_without_cjk():
    rng = random.Random(2)
    texts = [random_instruction(rng) + " café, ÉTÉ (x-1) \u212a" for _ in range(200)]
    assert all(cjk_tokens(t) == rouge_tokens(t) for t in texts)


def test_an_instruction_like_one_accepted_in_the_same_batch_is_rejected():
    pool = SimilarityIndex(0.7)
    pool.add(["Translate the sentence into French."])
    decisions = pool.check_and_add(
        ["List three uses of baking soda at home.", "List three uses of baking soda at home now."]
    )
    assert [ok for ok, _ in decisions] == [True, False]
    assert decisions[1][1].index == 1 and decisions[1][1].score > 0.9


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "### Task 4\nInstruction: Name two rivers.\nInput: <none>\nOutput: Nile, Amazon.",
        "Task 4:\n**Instruction:** Name two rivers.\n**Input:** N/A\n**Output:** Nile, Amazon.",
        "4. Instruction: Name two rivers.\n4. Input:\n<noinput>\n4. Output: Nile, Amazon.\n###",
        "**Task 4**\n- Instruction: Name two rivers.\n- Output: Nile, Amazon.\n\n---",
        "### 任务 4\n指令：Name two rivers.\n输入：<无>\n输出：Nile, Amazon.",
    ],
)
def test_parser_reads_the_shapes_models_give_a_numbered_list(reply):
    parsed = parse_reply(reply, "stop")
    assert parsed.tasks == [Task("Name two rivers.", "", "Nile, Amazon.")]
    assert parsed.rejected == []


def test_last_task_of_a_reply_cut_by_the_length_limit_is_dropped_as_truncated():
    reply = task_block(4, "Name two rivers.") + task_block(5, "Name two lakes.")
    assert len(parse_reply(reply, "stop").tasks) == 2
    cut = parse_reply(reply, "length")
    assert [t.instruction for t in cut.tasks] == ["Name two rivers."]
    assert [r.reason for r in cut.rejected] == [RejectReason.TRUNCATED]


def test_blocks_without_instruction_or_output_or_out_of_order_are_invalid_format():
    reply = (
        "### Task 4\nInstruction: Name a river.\nInput: <none>\n"
        "### Task 5\nInput: a lake\nInstruction: Name it.\nOutput: Erie\n"
        "### Task 6\nInstruction: Name a sea.\nInstruction: again\nOutput: x\n"
    )
    parsed = parse_reply(reply, "stop")
    assert parsed.tasks == []
    assert [r.reason for r in parsed.rejected] == [RejectReason.INVALID_FORMAT] * 3
    assert [r.detail for r in parsed.rejected] == [
        "no output",
        "fields out of order",
        "instruction given twice",
    ]


def test_an_output_may_quote_label_lines_of_its_own():
    reply = task_block(4, "Show a sample form.", output="Name: Ann\nInput: a date\nOutput: ok")
    assert parse_reply(reply, "stop").tasks[0].output == "Name: Ann\nInput: a date\nOutput: ok"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_formatted_tasks_parse_back_and_completion_prompt_ends_at_the_new_task(lang):
    seeds = load_seed_tasks(None, lang)[:5]
    text = "\n\n".join(format_task(task, i + 1, lang) for i, task in enumerate(seeds))
    assert parse_reply(text, "stop").tasks == seeds
    prompt = build_prompt(seeds[:3], 10, lang, "completion")
    assert prompt.endswith(completion_reply_prefix(4, lang))
    chat = build_prompt(seeds[:3], 10, lang, "chat")
    assert all(task.instruction in chat for task in seeds[:3]) and "13" in chat


# --- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instruction", "lang", "reason"),
    [
        ("Name two rivers in Africa.", "en", None),
        ("3 ways to save water at home?", "en", None),
        ("Name two rivers.", "en", RejectReason.TOO_SHORT),
        ("Name " + "many " * 150 + "rivers.", "en", RejectReason.TOO_LONG),
        ("Draw a cat using only words please.", "en", RejectReason.BLACKLISTED),
        ("Plot the numbers below on a chart.", "en", RejectReason.BLACKLISTED),
        ("Summarize this audio recording for me.", "en", RejectReason.BLACKLISTED),
        ("Write a program that prints primes.", "en", RejectReason.BLACKLISTED),
        ("Explain what a filesystem is to a child.", "en", None),  # "file" only as a whole word
        ("- Name two rivers in Africa.", "en", RejectReason.NON_TEXT_START),
        ("Échange the words of this sentence.", "en", RejectReason.NON_TEXT_START),
        ("请解释光合作用的过程。", "zh", None),
        ("请描述下面这张图片的内容。", "zh", RejectReason.BLACKLISTED),
        ("《红楼梦》的作者是谁？", "zh", RejectReason.NON_TEXT_START),
        ("翻译", "zh", RejectReason.TOO_SHORT),
    ],
)
def test_each_filter_rejects_with_its_reason(instruction, lang, reason):
    failed = check_task(Task(instruction, "", "x"), lang, blacklist_pattern(lang), 4, 150)
    assert (failed[0] if failed else None) == reason


# --- client -------------------------------------------------------------------------------


def test_client_backs_off_on_429_and_5xx_then_reads_the_reply():
    import asyncio

    statuses = deque([429, 503, 200])
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        status = statuses.popleft()
        if status != 200:
            return httpx.Response(status, headers={"Retry-After": "0"}, json={"error": {}})
        body = {"choices": [{"text": "hi", "finish_reason": "length"}], "usage": {}}
        return httpx.Response(200, json=body)

    async def ask():
        transport = httpx.MockTransport(handler)
        async with OpenAIClient("http://t", "m", transport=transport) as c:
            return await c.complete("prompt", max_tokens=5), c.usage.retries

    reply, retries = asyncio.run(ask())
    assert (reply.text, reply.finish_reason, retries) == ("hi", "length", 2)
    assert seen[-1] == {"model": "m", "prompt": "prompt", "max_tokens": 5}


def test_client_fails_at_once_on_a_refused_request():
    import asyncio

    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(401, json={"error": {"message": "bad key"}})

    async def ask():
        transport = httpx.MockTransport(handler)
        async with OpenAIClient("http://t/v1/", "m", transport=transport) as client:
            await client.chat([{"role": "user", "content": "prompt"}])

    with pytest.raises(ApiError, match="HTTP 401: bad key"):
        asyncio.run(ask())
    assert calls == ["/v1/chat/completions"]


# --- the command against a stand-in teacher ------------------------------------------------


def test_canned_batch_counts_every_rejection_reason_in_the_report(tmp_path):
    teacher = Teacher([{"status": 429}, {"text": CANNED_EN, "finish_reason": "length"}])
    out, report = tmp_path / "gen.jsonl", tmp_path / "report.json"
    with serving(teacher) as url:
        code = generate(url, out, "--num", "2", "--report", str(report), "--max-requests", "1")
    assert code == 0
    records = read_jsonl(out)
    assert [r["instruction"] for r in records] == [
        "Explain why the sky looks blue on a clear day.",
        "Summarize the paragraph in one sentence.",
    ]
    assert records[1] == {
        "instruction": "Summarize the paragraph in one sentence.",
        "input": "The council met on Monday.",
        "output": "Sure.",
    }
    body = json.loads(report.read_text())
    assert body["kept"] == CANNED_EN_OUTCOMES["kept"]
    expected_drops = {k: v for k, v in CANNED_EN_OUTCOMES.items() if k != "kept"}
    assert body["dropped_by_reason"] == expected_drops
    assert Counter(d["reason"] for d in body["drops"]) == expected_drops
    assert body["prompt_tokens"] == 100 and body["completion_tokens"] == 50
    assert [route for route, _ in teacher.requests] == ["chat", "chat"]  # the 429, then again
    sent = teacher.requests[-1][1]
    assert sent["model"] == "teacher" and sent["messages"][0]["role"] == "user"
    assert "Write 17 new tasks, numbered 4 to 20" in sent["messages"][0]["content"]


def test_chinese_completion_mode_uses_the_completion_route_and_character_similarity(tmp_path):
    teacher = Teacher([{"text": CANNED_ZH, "finish_reason": "stop"}])
    out, report = tmp_path / "zh.jsonl", tmp_path / "report.json"
    with serving(teacher) as url:
        args = ["--lang", "zh", "--api-mode", "completion", "--num", "5", "--max-requests", "1"]
        assert generate(url, out, *args, "--report", str(report)) == 0
    assert read_jsonl(out) == [
        {
            "instruction": "请解释为什么晴朗的白天天空是蓝色的。",
            "input": "",
            "output": "阳光中的蓝光被空气分子散射得更多。",
        }
    ]
    body = json.loads(report.read_text())
    assert body["dropped_by_reason"] == {
        "duplicate": 1,
        "similar": 1,
        "blacklisted": 1,
        "non_text_start": 1,
    }
    route, sent = teacher.requests[0]
    assert route == "completion" and sent["prompt"].endswith("### 任务 4\n指令：")
    assert sent["stop"] == ["### 任务 21"]


SYLLABLES = ["ka", "lo", "mi", "ren", "tu", "sa", "vor", "pel", "qui", "dan", "bo", "zim"]


def fresh_tasks(n_request: int, count: int = 3) -> str:
    """Valid tasks for request ``n_request``, far apart in ROUGE-L from any other request's."""
    rng = random.Random(n_request)
    blocks = []
    for i in range(count):
        words = ["".join(rng.choices(SYLLABLES, k=3)) for _ in range(6)]
        instruction = f"Describe the {words[0]} {words[1]} of {words[2]} {words[3]} {words[4]}"
        blocks.append(task_block(4 + i, instruction, output=f"The {words[5]} of it."))
    return "\n".join(blocks)


def test_restart_reloads_pool_and_counters_and_appends_to_out(tmp_path):
    out, report = tmp_path / "gen.jsonl", tmp_path / "report.json"
    first = fresh_tasks(0, 2) + "\n" + task_block(6, "x y")  # 2 kept, 1 too short
    with serving(Teacher([{"text": first, "finish_reason": "stop"}])) as url:
        assert generate(url, out, "--num", "2") == 0
    kept_before = read_jsonl(out)
    assert len(kept_before) == 2
    again = task_block(4, kept_before[0]["instruction"]) + "\n" + fresh_tasks(1, 2)
    teacher = Teacher([{"text": again, "finish_reason": "stop"}])
    with serving(teacher) as url:
        assert generate(url, out, "--num", "4", "--report", str(report)) == 0
    records = read_jsonl(out)
    assert records[:2] == kept_before and len(records) == 4
    assert len({r["instruction"] for r in records}) == 4
    body = json.loads(report.read_text())
    assert body["dropped_by_reason"] == {"too_short": 1, "duplicate": 1}
    assert body["read"] == 6 and body["requests"] == 2 and len(teacher.requests) == 1
    assert [d["index"] for d in body["drops"]] == [2, 3]


def test_records_a_killed_run_wrote_after_its_last_journal_line_are_cut(tmp_path):
    out = tmp_path / "gen.jsonl"
    with serving(Teacher([{"text": fresh_tasks(0), "finish_reason": "stop"}])) as url:
        assert generate(url, out, "--num", "3") == 0
    committed = out.read_bytes()
    with out.open("a") as handle:  # appended, then killed before the journal line
        handle.write('{"instruction": "half written", "input": "", "output": "x"}\n')
    with journal_path(out).open("a") as handle:
        handle.write('{"accepted": [')  # a torn journal line
    with serving(Teacher([{"text": fresh_tasks(1), "finish_reason": "stop"}])) as url:
        assert generate(url, out, "--num", "6") == 0
    assert out.read_bytes().startswith(committed)
    assert "half written" not in out.read_text()
    assert len(read_jsonl(out)) == 6
    assert all(json.loads(line) for line in journal_path(out).read_text().splitlines())


def test_resume_refuses_other_settings_and_an_out_without_journal(tmp_path, capsys):
    out = tmp_path / "gen.jsonl"
    with serving(Teacher([{"text": fresh_tasks(0), "finish_reason": "stop"}])) as url:
        assert generate(url, out, "--num", "3") == 0
        assert generate(url, out, "--num", "6", "--sharegpt") == 2
        assert "other settings" in capsys.readouterr().err
        stray = tmp_path / "stray.jsonl"
        stray.write_text('{"instruction": "a", "input": "", "output": "b"}\n')
        assert generate(url, stray, "--num", "6") == 2
        assert "journal" in capsys.readouterr().err


def test_sharegpt_output_is_what_data_convert_writes_from_alpaca(tmp_path):
    from data_prep.convert import from_alpaca

    teacher = Teacher(fallback=lambda n: fresh_tasks(n))
    alpaca, sharegpt = tmp_path / "a.jsonl", tmp_path / "s.jsonl"
    with serving(teacher) as url:
        assert generate(url, alpaca, "--num", "4") == 0
        teacher.requests.clear()
        assert generate(url, sharegpt, "--num", "4", "--sharegpt") == 0
    records = read_jsonl(sharegpt)
    assert [r["id"] for r in records] == [f"selfinstruct_{i}" for i in range(4)]
    assert [r["conversations"] for r in records] == [from_alpaca(a) for a in read_jsonl(alpaca)]
    assert any(a["input"] for a in read_jsonl(alpaca)) is False  # fresh_tasks have no input


def test_a_teacher_that_only_repeats_itself_stops_at_max_requests_with_a_warning(tmp_path, capsys):
    teacher = Teacher(fallback=lambda n: task_block(4, SEED_EN))
    out = tmp_path / "gen.jsonl"
    with serving(teacher) as url:
        assert generate(url, out, "--num", "5", "--max-requests", "3") == 0
    assert len(teacher.requests) == 3 and out.read_text() == ""
    assert "stopped after 3 requests" in capsys.readouterr().err


def test_a_refused_request_is_a_one_line_error(tmp_path, capsys):
    teacher = Teacher([{"status": 401}])
    with serving(teacher) as url:
        assert generate(url, tmp_path / "gen.jsonl", "--num", "5") == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "Traceback" not in err


def test_concurrent_requests_never_overshoot_num(tmp_path):
    teacher = Teacher(fallback=lambda n: fresh_tasks(n, 3))
    out = tmp_path / "gen.jsonl"
    with serving(teacher) as url:
        argv = ["data", "generate", "--api", url, "--model", "m", "-o", str(out), "--quiet"]
        assert main([*argv, "--num", "10", "--concurrency", "4"]) == 0
    assert len(read_jsonl(out)) == 10
    assert len(teacher.requests) <= 4 + 3  # 4 replies reach 10 with 3 each; no more than 4 extra
