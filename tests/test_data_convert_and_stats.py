"""``data convert`` (Alpaca/BELLE, OpenAI messages -> ShareGPT) and ``data stats``."""

from __future__ import annotations

import json

import pytest
from data_fixtures import read_jsonl, write_jsonl

import fastchat_lite.cli as cli
from fastchat_lite import tokenize_conversation


@pytest.fixture
def run_cli(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", {"data": "data_prep.cli"})
    return cli.main


def convert(tmp_path, run_cli, records, fmt="auto"):
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    code = run_cli(
        [
            "data",
            "convert",
            str(src),
            "-o",
            str(out),
            "--from",
            fmt,
            "--report",
            str(report),
            "--quiet",
        ]
    )
    assert code == 0
    return read_jsonl(out), json.loads(report.read_text(encoding="utf-8"))


def test_alpaca_input_is_appended_to_the_instruction(tmp_path, run_cli):
    records = [
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
        {"instruction": "写一首诗 🎉", "input": "", "output": "春眠不觉晓"},
    ]
    out, report = convert(tmp_path, run_cli, records, "alpaca")
    assert out == [
        {
            "id": "rec0",
            "conversations": [
                {"from": "human", "value": "Translate to French.\n\nGood morning"},
                {"from": "gpt", "value": "Bonjour"},
            ],
        },
        {
            "id": "rec1",
            "conversations": [
                {"from": "human", "value": "写一首诗 🎉"},
                {"from": "gpt", "value": "春眠不觉晓"},
            ],
        },
    ]
    assert report["dropped"] == 0


def test_openai_messages_keep_the_system_turn_and_are_trainable(tmp_path, run_cli, tiny_tokenizer):
    record = {
        "id": "o1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello!"},
        ],
    }
    out, _ = convert(tmp_path, run_cli, [record], "openai")
    assert out[0]["conversations"] == [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello!"},
    ]
    assert tokenize_conversation(out[0], tiny_tokenizer)["input_ids"]


def test_empty_system_message_means_no_system_turn(tmp_path, run_cli):
    record = {
        "messages": [
            {"role": "system", "content": ""},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
        ]
    }
    out, _ = convert(tmp_path, run_cli, [record], "openai")
    assert [t["from"] for t in out[0]["conversations"]] == ["human", "gpt"]


def test_auto_detects_each_record_and_counts_bad_ones(tmp_path, run_cli):
    records = [
        {"instruction": "a", "output": "b"},
        {
            "id": "m",
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        },
        {
            "id": "s",
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        },
        {"instruction": "no output"},
        {"id": "t", "messages": [{"role": "tool", "content": "x"}]},
        {
            "id": "e",
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}],
        },
        {"something": "else"},
        "{broken",
    ]
    out, report = convert(tmp_path, run_cli, records)
    assert [r["id"] for r in out] == ["rec0", "m", "s"]
    assert report["dropped_by_reason"] == {
        "bad_shape": 2,
        "empty_message": 1,
        "invalid_json": 1,
        "unknown_role": 1,
    }


def test_stats_counts_turns_roles_and_token_histogram(tmp_path, tiny_tokenizer_dir, capsys):
    from data_prep.stats import StatsConfig, compute_stats

    records = [
        {
            "id": "a",
            "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
        },
        {
            "id": "b",
            "conversations": [
                {"from": "human", "value": "q" * 10},
                {"from": "gpt", "value": "a" * 20},
                {"from": "human", "value": "q"},
                {"from": "gpt", "value": "a"},
            ],
        },
        "{broken",
    ]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    chars = compute_stats(src, StatsConfig())
    assert chars["records"] == 3 and chars["conversations"] == 2
    assert chars["unusable"] == {"invalid_json": 1}
    assert chars["turns"] == {"total": 6, "per_conversation": {2: 1, 4: 1}}
    assert chars["roles"] == {"gpt": {"turns": 3, "chars": 23}, "human": {"turns": 3, "chars": 13}}
    assert chars["length"]["max"] == 32 and chars["histogram"]["<128"] == 2
    tokens = compute_stats(src, StatsConfig(tokenizer=str(tiny_tokenizer_dir)))
    assert tokens["length_unit"] == "tokens" and tokens["length"]["max"] > 20


def test_stats_cli_prints_tables_and_writes_json(tmp_path, run_cli, capsys):
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {
                "id": "a",
                "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
            }
        ],
    )
    out = tmp_path / "stats.json"
    assert run_cli(["data", "stats", str(src), "--json", str(out)]) == 0
    assert "conversation length (chars)" in capsys.readouterr().out
    assert json.loads(out.read_text())["conversations"] == 1
