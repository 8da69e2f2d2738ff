"""``data clean``: normalisation, every drop reason, the CLI, bad input and atomic output."""

from __future__ import annotations

import json
import random

import pytest
from data_fixtures import (
    PYTHON_CODE_HTML,
    clean_one,
    code_block,
    conversation,
    kept_turns,
    read_jsonl,
    reply,
    turn,
    write_jsonl,
)

import fastchat_lite.cli as cli
from data_prep.clean import CleanConfig, Cleaner, clean_file
from data_prep.drops import DropLog, Tally
from fastchat_lite.io import RawRecord

GOOD = reply("<p>Sure, here it is.</p>", code_block(PYTHON_CODE_HTML))


@pytest.fixture
def run_cli(monkeypatch):
    """``fastchat-lite`` with only the data command (other stages may not be installed)."""
    monkeypatch.setattr(cli, "COMMANDS", {"data": "data_prep.cli"})
    return cli.main


def test_human_turns_are_kept_as_typed_and_gpt_html_becomes_markdown():
    human = 'What does <div class="x"> do with my_var and *args?'
    turns = kept_turns(conversation("a", (human, GOOD)))
    assert turns[0] == {"from": "human", "value": human}
    assert turns[1]["value"].startswith("Sure, here it is.\n\n```python\ndef add_items")


def test_role_aliases_are_normalised():
    value = {"id": "x", "conversations": [turn("user", "hi"), turn("ChatGPT", "hello")]}
    assert [t["from"] for t in kept_turns(value)] == ["human", "gpt"]


def test_leading_gpt_and_trailing_human_turns_are_trimmed():
    value = {
        "id": "t",
        "conversations": [
            turn("gpt", "Hello!"),
            turn("human", "Q"),
            turn("gpt", "A"),
            turn("human", "unanswered"),
        ],
    }
    assert kept_turns(value) == [turn("human", "Q"), turn("gpt", "A")]


def test_missing_id_gets_a_stable_generated_id():
    outcome = Cleaner(CleanConfig(), []).clean(RawRecord(7, conversation(None, ("q", "a"))))
    assert outcome.record_id == "rec7"
    assert json.loads(outcome.line)["id"] == "rec7"


def test_glued_regenerate_counter_is_removed_but_fractions_are_not():
    turns = kept_turns(conversation("n", ("1 / 1Write a poem", "1 / 2 of the cake")))
    assert turns[0]["value"] == "Write a poem" and turns[1]["value"] == "1 / 2 of the cake"


def test_gpt_turn_loses_ui_chrome_but_keeps_its_text():
    noisy = "1 / 2\n\nA poem:\n\nRoses are red.Copy406 chars / 79 words"
    turns = kept_turns(conversation("p", ("Write a poem", noisy)))
    assert turns[1]["value"] == "A poem:\n\nRoses are red."


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (["not", "an", "object"], "bad_shape"),
        ({"id": "m"}, "bad_shape"),
        ({"id": "m", "conversations": "hi"}, "bad_shape"),
        ({"id": "m", "conversations": [{"from": "human"}]}, "bad_shape"),
        ({"id": "m", "conversations": [turn("human", 3), turn("gpt", "a")]}, "bad_shape"),
        ({"id": ["x"], "conversations": []}, "bad_shape"),
        ({"id": "r", "conversations": [turn("robot", "x"), turn("gpt", "a")]}, "unknown_role"),
        (conversation("e", ("   \n", "answer")), "empty_message"),
        (conversation("e2", ("q", reply("<p> </p>"))), "empty_message"),
        (
            {
                "id": "c",
                "conversations": [turn("human", "a"), turn("human", "b"), turn("gpt", "c")],
            },
            "not_alternating",
        ),
        ({"id": "s", "conversations": [turn("human", "only a question")]}, "too_short"),
        (
            conversation("b", ("Who are you?", "I am ChatGPT, a model trained by OpenAI.")),
            "blocked_phrase",
        ),
        (
            conversation("b2", ("Who?", reply("<p>As a language model developed by OPENAI</p>"))),
            "blocked_phrase",
        ),
        (conversation("u", ("Hi", "network error"), ("Hi?", "Hello!")), "ui_error"),
    ],
)
def test_each_bad_record_is_dropped_with_its_reason(value, reason):
    outcome = clean_one(value)
    assert outcome.reason == reason and outcome.line is None
    assert outcome.detail


def test_blocked_phrase_is_found_through_markdown_emphasis():
    leak = conversation("em", ("Who?", reply("<p>I am <strong>ChatGPT</strong>.</p>")))
    assert clean_one(leak).reason == "blocked_phrase"


def test_blocked_phrases_only_count_in_gpt_turns():
    assert kept_turns(conversation("h", ("Are you ChatGPT trained by OpenAI?", "No, I am Vicuna.")))


def test_blocked_phrases_are_configurable(tmp_path):
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("# one a line\nas an AI language model\n", encoding="utf-8")
    config = CleanConfig(blocked_phrases_file=str(phrases))
    leak = conversation("x", ("q", "As an AI   language model, I cannot."))
    assert clean_one(leak, config).reason == "blocked_phrase"
    assert clean_one(conversation("y", ("q", "I am ChatGPT")), config).reason is None
    extra = CleanConfig(blocked_phrases=["Vicuna"])
    assert clean_one(conversation("z", ("q", "I am vicuna")), extra).reason == "blocked_phrase"


def test_too_short_thresholds_are_configurable():
    short = conversation("s", ("hi", "yo"))
    assert clean_one(short).reason is None
    assert clean_one(short, CleanConfig(min_chars=10)).reason == "too_short"
    assert clean_one(short, CleanConfig(min_turns=4)).reason == "too_short"


def test_oversized_message_is_dropped_without_parsing_it():
    huge = reply("<p>" + "x" * 10_000_000 + "</p>")
    outcome = clean_one(conversation("big", ("q", huge)))
    assert outcome.reason == "message_too_long" and "10,000," in outcome.detail


def test_language_filter_keeps_only_requested_languages():
    config = CleanConfig(lang="en,zh")
    en = conversation("en", ("What is the capital of France?", "The capital of France is Paris."))
    zh = conversation("zh", ("法国的首都是哪里？", "法国的首都是巴黎，它是一座美丽的城市。"))
    de = conversation(
        "de", ("Was ist die Hauptstadt von Frankreich?", "Die Hauptstadt von Frankreich ist Paris.")
    )
    assert clean_one(en, config).reason is None
    assert clean_one(zh, config).reason is None
    assert clean_one(de, config).reason == "wrong_language"


def _clean(tmp_path, records, **options):
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    with DropLog(Tally()) as drops:
        tally = clean_file(src, out, CleanConfig(**options), drops, progress=False)
        drops.write_report(tmp_path / "report.json", {})
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    return tally, read_jsonl(out), report


def test_exact_duplicates_are_collapsed_first_one_kept(tmp_path):
    records = [
        conversation("a", ("q", GOOD)),
        conversation("b", ("q", GOOD)),
        conversation("c", ("q", "different")),
    ]
    _tally, kept, report = _clean(tmp_path, records)
    assert [r["id"] for r in kept] == ["a", "c"]
    assert report["drops"] == [{"index": 1, "id": "b", "reason": "duplicate", "detail": "of a"}]


def test_bad_lines_are_counted_not_fatal(tmp_path):
    path = tmp_path / "in.jsonl"
    good = json.dumps(
        conversation("ok", ("你好 🎉", "你好！有什么可以帮你？🚀")), ensure_ascii=False
    )
    path.write_bytes(good.encode() + b"\n{not json\n" + b'{"id": "\xff"}\n')
    out = tmp_path / "out.jsonl"
    with DropLog(Tally()) as drops:
        tally = clean_file(path, out, CleanConfig(), drops, progress=False)
    assert tally.kept == 1 and dict(tally.dropped) == {"invalid_json": 1, "invalid_utf8": 1}
    assert read_jsonl(out)[0]["conversations"][1]["value"] == "你好！有什么可以帮你？🚀"


def test_workers_give_the_same_output_as_one_process(tmp_path):
    rng = random.Random(0)
    records = [conversation(f"w{i}", (f"q{rng.randint(0, 20)}", GOOD)) for i in range(120)]
    one = _clean(tmp_path, records, workers=1, chunk_size=7)
    two = _clean(tmp_path, records, workers=2, chunk_size=7)
    assert one[1] == two[1] and one[2]["drops"] == two[2]["drops"]
    assert one[0].kept == len({r["conversations"][0]["value"] for r in records})


def test_identity_conversations_are_all_kept(tmp_path, identity_conversations):
    tally, kept, report = _clean(tmp_path, identity_conversations)
    assert tally.read == 500 and tally.kept == 500 and report["drops"] == []
    assert kept[0] == identity_conversations[0]
