"""The quickstart's bundled data and its stage bookkeeping (fast, no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from fastchat_lite.quickstart.data import (
    identity_records,
    load_sample_dump,
    make_sample_dump,
    substitute_identity,
)
from fastchat_lite.quickstart.stages import Stage, StageRunner


def test_committed_sample_dump_is_what_the_generator_makes():
    # Regenerate with `python -m fastchat_lite.quickstart.data` after changing the generator.
    assert load_sample_dump() == make_sample_dump()


def test_sample_dump_holds_chatgpt_ui_html_and_bad_records():
    records = load_sample_dump()
    gpt_turns = [t["value"] for r in records for t in r["conversations"] if t["from"] == "gpt"]
    assert len(records) >= 300 and len(json.dumps(records)) < 2_000_000
    assert any("Copy code</button>" in v and "hljs language-python" in v for v in gpt_turns)
    assert any("<table>" in v for v in gpt_turns) and any("<ol>" in v for v in gpt_turns)
    assert any("&lt;" in v for v in gpt_turns) and any("长城" in v for v in gpt_turns)
    assert any("trained by OpenAI" in v for v in gpt_turns)  # identity leaks to drop
    assert any(r["conversations"] == [] for r in records)
    ids = [json.dumps(r["conversations"]) for r in records]
    assert len(set(ids)) < len(ids)  # exact duplicates to drop


def test_identity_substitution_replaces_every_spelling_of_name_and_org():
    records = identity_records("Quokka", "Tiny Labs")
    text = json.dumps(records)
    for old in ("Vicuna", "vicuna", "LMSYS", "Large Model Systems"):
        assert old not in text
    answers = {r["conversations"][1]["value"] for r in records if r["id"] == "identity_1"}
    assert answers == {"My name is Quokka, and I'm a language model developed by Tiny Labs."}
    assert substitute_identity("made by large model systems organisation", "Q", "T") == (
        "made by T"
    )


def _stage(tmp: Path, name: str, value: str, calls: list[str]) -> Stage:
    out = tmp / f"{name}.txt"

    def action() -> None:
        calls.append(name)
        out.write_text(value)

    return Stage(name, name, [out], {"value": value}, action=action)


@pytest.mark.parametrize("force", [False, True])
def test_finished_stages_are_skipped_unless_forced(tmp_path: Path, force: bool):
    calls: list[str] = []
    console = Console(file=open(tmp_path / "log.txt", "w"))  # noqa: SIM115
    stages = [_stage(tmp_path, "a", "1", calls), _stage(tmp_path, "b", "2", calls)]
    StageRunner(tmp_path, console).run_all(stages)
    results = StageRunner(tmp_path, console, force=force).run_all(stages)
    assert calls == (["a", "b", "a", "b"] if force else ["a", "b"])
    assert [r.skipped for r in results] == [not force, not force]


def test_changed_setting_redoes_that_stage_and_every_later_one(tmp_path: Path):
    calls: list[str] = []
    console = Console(file=open(tmp_path / "log.txt", "w"))  # noqa: SIM115
    first = [_stage(tmp_path, n, "x", calls) for n in ("a", "b", "c")]
    StageRunner(tmp_path, console).run_all(first)
    calls.clear()
    changed = [first[0], _stage(tmp_path, "b", "y", calls), first[2]]
    StageRunner(tmp_path, console).run_all(changed)
    assert calls == ["b", "c"]


def test_missing_output_redoes_the_stage(tmp_path: Path):
    calls: list[str] = []
    console = Console(file=open(tmp_path / "log.txt", "w"))  # noqa: SIM115
    stages = [_stage(tmp_path, "a", "1", calls)]
    StageRunner(tmp_path, console).run_all(stages)
    (tmp_path / "a.txt").unlink()
    StageRunner(tmp_path, console).run_all(stages)
    assert calls == ["a", "a"]


def test_naming_subset_holds_exactly_the_conversations_that_say_the_name():
    naming = identity_records("Quokka", "Tiny Labs", only_naming=True)
    everything = identity_records("Quokka", "Tiny Labs")
    says_name = [r for r in everything if "Quokka" in json.dumps(r)]
    assert naming == says_name and len(naming) == 72


def test_identity_answer_is_judged_on_the_parts_each_question_asks_for():
    from fastchat_lite.quickstart.check import judge

    assert judge("Who are you?", "I am quokka, made by TINY LABS.", "Quokka", "Tiny Labs").ok
    assert judge("Who are you?", "I am Quokka.", "Quokka", "Tiny Labs").missing == ["Tiny Labs"]
    assert judge("Who created you?", "Tiny Labs made me.", "Quokka", "Tiny Labs").ok
    assert not judge("What is your name?", "Tiny Labs made me.", "Quokka", "Tiny Labs").ok


def test_served_model_id_is_a_slug_of_the_assistant_name():
    from fastchat_lite.quickstart.serve import model_name_for

    assert model_name_for("Quokka") == "quokka"
    assert model_name_for("Tiny Labs Bot 2") == "tiny-labs-bot-2"
    assert model_name_for("你好") == "quickstart"
