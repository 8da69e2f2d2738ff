"""UI chrome and ChatGPT-UI error replies: removed or counted, never mistaken for content."""

from __future__ import annotations

import json

import pytest
from data_fixtures import (
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
from data_prep.clean import CleanConfig, clean_file
from data_prep.drops import DropLog, DropReason, Tally
from data_prep.html import html_to_markdown
from data_prep.ui_chrome import DEFAULT_UI_ERRORS, UiErrorMatcher, strip_ui_chrome

# The error box the UI drew where a reply should be (as ShareGPT dumps saved it).
ERROR_BOX = (
    '<div class="py-2 px-3 border text-gray-600 rounded-md text-sm dark:text-gray-100 '
    'border-red-500 bg-red-500/10">{}</div>'
)


# --- chrome -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "noisy",
    [
        "Paris is the capital.Copy406 chars / 79 words",
        "Paris is the capital.\n\nCopy406 chars / 79 words",
        "Paris is the capital.\n\n406 chars / 79 words",
        "Paris is the capital.406 chars / 79 words",
        "Paris is the capital. Copy2,162 chars / 354 words",
        "Copy406 chars / 79 words\nParis is the capital.",
        "Paris is the capital.\n\nCopy\n406 chars / 79 words",
    ],
)
def test_share_extension_word_counter_is_removed_from_replies(noisy):
    assert strip_ui_chrome(noisy) == "Paris is the capital."
    assert kept_turns(conversation("c", ("Capital?", noisy)))[1]["value"] == "Paris is the capital."


def test_word_counter_glued_between_paragraphs_leaves_them_apart():
    assert strip_ui_chrome("One.Copy12 chars / 3 wordsTwo.") == "One.\n\nTwo."


def test_word_counter_mentioned_in_a_sentence_is_kept():
    for text in ("The essay has 406 chars / 79 words in it.", "It is 406 chars / 79 words"):
        assert strip_ui_chrome(text) == text


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "bs4"])
def test_chrome_around_html_replies_is_removed_on_both_paths(fast):
    html = "1 / 2\n" + reply("<p>Use <code>ls</code>.</p>", code_block("ls -la", "bash"))
    html += "Copy406 chars / 79 words"
    md = strip_ui_chrome(html_to_markdown(html, fast=fast))
    assert md == "Use `ls`.\n\n```bash\nls -la\n```"
    value = kept_turns(conversation("h", ("How?", html)))[1]["value"]
    assert value == md


@pytest.mark.parametrize(
    ("noisy", "clean"),
    [
        ("1 / 2\n\nHere is the answer.", "Here is the answer."),
        ("2/2\nHere is the answer.", "Here is the answer."),
        ("Here is the answer.\n\n2 / 2", "Here is the answer."),
        ("3 / 3\nHere is the answer.\n1 / 3", "Here is the answer."),
    ],
)
def test_regenerate_counter_line_at_start_or_end_is_removed(noisy, clean):
    assert strip_ui_chrome(noisy) == clean
    assert kept_turns(conversation("r", ("Q", noisy)))[1]["value"] == clean


@pytest.mark.parametrize(
    "text",
    [
        "1 / 2 of the cake is left.",
        "Half is 1 / 2",
        "1/2",  # the whole reply: an answer, not a counter
        "Ratio:\n\n3 / 2",  # 3 of 2 versions cannot be a counter
        "Steps:\n1 / 2 done\nmore",
    ],
)
def test_fractions_that_are_content_are_kept(text):
    assert strip_ui_chrome(text) == text


@pytest.mark.parametrize(
    ("noisy", "clean"),
    [
        ("Run this:\nCopy code\nls -la", "Run this:\nls -la"),
        ("Run this:\nbashCopy code\nls -la", "Run this:\nls -la"),
        ("Run this:\n\n```bashCopy code\nls -la\n```", "Run this:\n\n```bash\nls -la\n```"),
        ("Run this:\n\n```bash\nCopy code\nls -la\n```", "Run this:\n\n```bash\nls -la\n```"),
        ("Done.\n\nCopy code", "Done."),
    ],
)
def test_stray_copy_code_labels_are_removed(noisy, clean):
    assert strip_ui_chrome(noisy) == clean


def test_copy_code_in_a_sentence_or_later_in_code_is_kept():
    text = "Click Copy code to copy it.\n\n```text\nfirst\nCopy code\n```"
    assert strip_ui_chrome(text) == text


def test_human_turns_keep_what_looks_like_chrome():
    turns = kept_turns(conversation("u", ("Count: 406 chars / 79 words\n\n1 / 2", "OK.")))
    assert turns[0]["value"] == "Count: 406 chars / 79 words\n\n1 / 2"


# --- UI error replies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply_text",
    [
        "Too many requests in 1 hour. Try again later.",
        "network error",
        "Network Error",
        "An error occurred. If this issue persists please contact us through our help center at "
        "help.openai.com.",
        "Something went wrong, please try reloading the conversation.",
        "Hmm...something seems to have gone wrong.",
        "There was an error generating a response",
        "Conversation not found",
        "Only one message at a time. Please allow any other responses to complete before "
        "sending another message, or wait one minute.",
        "  **Too many requests in 2 hour.**  Try   again later ",
        "You've reached the current usage cap for GPT-4, please try again after 3:38 PM.",
        "!\nSomething went wrong. If this issue persists please contact us through our help "
        "center at help.openai.com.",
    ],
)
def test_ui_error_reply_is_recognised_as_a_whole_reply(reply_text):
    assert UiErrorMatcher(DEFAULT_UI_ERRORS).match(reply_text)


@pytest.mark.parametrize(
    "reply_text",
    [
        "If you see a network error, check your proxy settings first and then retry.",
        "Conversation not found errors mean the id is wrong.",
        "network",
        "",
    ],
)
def test_reply_that_mentions_an_error_is_not_one(reply_text):
    assert UiErrorMatcher(DEFAULT_UI_ERRORS).match(reply_text) is None


def test_final_ui_error_exchange_is_trimmed_and_the_record_kept():
    record = conversation("t", ("Hi", "Hello! How can I help?"), ("And then?", "network error"))
    outcome = clean_one(record)
    assert outcome.reason is None and outcome.trimmed == "ui_error"
    assert json.loads(outcome.line)["conversations"] == [
        turn("human", "Hi"),
        turn("gpt", "Hello! How can I help?"),
    ]


def test_final_ui_error_in_html_with_unanswered_question_after_it_is_trimmed():
    error = ERROR_BOX.format("Too many requests in 1 hour. Try again later.")
    record = conversation("h", ("Hi", reply("<p>Hello.</p>")), ("More", error))
    record["conversations"].append(turn("human", "hello?"))
    assert kept_turns(record) == [turn("human", "Hi"), turn("gpt", "Hello.")]


def test_ui_error_in_the_middle_drops_the_record():
    record = conversation("m", ("Hi", "network error"), ("Hello?", "Hello! How can I help?"))
    outcome = clean_one(record)
    assert outcome.reason == "ui_error" and "turn 1" in outcome.detail


def test_ui_error_as_the_only_reply_drops_the_record():
    outcome = clean_one(conversation("o", ("Hi", "Hmm...something seems to have gone wrong.")))
    assert outcome.reason == "ui_error" and "no exchange left" in outcome.detail


def test_trim_that_leaves_the_record_too_short_drops_it_as_ui_error():
    record = conversation("s", ("Hi", "Hello!"), ("Poem?", "network error"))
    outcome = clean_one(record, CleanConfig(min_chars=20))
    assert outcome.reason == "ui_error" and outcome.detail.startswith("final UI error reply cut")


def test_human_turn_saying_network_error_is_not_a_ui_error():
    turns = kept_turns(conversation("n", ("network error", "Try reconnecting your router.")))
    assert turns[0]["value"] == "network error"


def test_ui_errors_are_configurable(tmp_path):
    errors = tmp_path / "errors.txt"
    errors.write_text("# one a line\nThe model is overloaded *\n", encoding="utf-8")
    config = CleanConfig(ui_errors_file=str(errors))
    overloaded = conversation("x", ("q", "The model is overloaded with other requests."))
    assert clean_one(overloaded, config).reason == "ui_error"
    assert clean_one(conversation("y", ("q", "network error")), config).reason is None
    extra = CleanConfig(ui_errors=["Request timed out"])
    assert clean_one(conversation("z", ("q", "Request timed out.")), extra).reason == "ui_error"
    assert clean_one(conversation("w", ("q", "network error")), extra).reason == "ui_error"


def test_trimmed_ui_errors_are_counted_in_the_report(tmp_path):
    records = [
        conversation("a", ("Hi", "Hello!"), ("More", "network error")),
        conversation("b", ("Hi", "network error"), ("Again", "Hello!")),
        conversation("c", ("Q", "A")),
    ]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    with DropLog(Tally()) as drops:
        tally = clean_file(src, out, CleanConfig(), drops, progress=False)
        drops.write_report(tmp_path / "report.json", {})
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert [r["id"] for r in read_jsonl(out)] == ["a", "c"]
    assert tally.trimmed == {"ui_error": 1}
    assert report["trimmed_ui_error"] == 1
    assert report["dropped_by_reason"] == {DropReason.UI_ERROR.value: 1}


def test_cli_flags_configure_ui_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", {"data": "data_prep.cli"})
    src = write_jsonl(tmp_path / "in.jsonl", [conversation("a", ("q", "Request timed out."))])
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    argv = ["data", "clean", str(src), "-o", str(out), "--report", str(report), "--quiet"]
    assert cli.main([*argv, "--ui-errors", "Request timed out"]) == 0
    assert json.loads(report.read_text())["dropped_by_reason"] == {"ui_error": 1}
    assert cli.main([*argv, "--ui-errors-file", str(tmp_path / "missing.txt")]) == 2
