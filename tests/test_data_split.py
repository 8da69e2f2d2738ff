"""``data split``: every piece fits the budget with the real training tokenization, no turn lost."""

from __future__ import annotations

import json

import pytest
from data_fixtures import read_jsonl, write_jsonl

import fastchat_lite.cli as cli
from fastchat_lite import encode_conversation


@pytest.fixture
def run_cli(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", {"data": "data_prep.cli"})
    return cli.main


def long_conversation(cid: str, exchanges: int, system: str | None = None) -> dict:
    turns = [{"from": "system", "value": system}] if system else []
    for k in range(exchanges):
        turns.append({"from": "human", "value": f"Question {k}: 你好 🎉 " + "word " * (k % 5 + 3)})
        turns.append(
            {"from": "gpt", "value": f"Answer {k}: " + "The quick brown fox. " * (k % 7 + 2)}
        )
    return {"id": cid, "conversations": turns}


def split(tmp_path, run_cli, tokenizer_dir, records, *extra):
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    code = run_cli(
        [
            "data",
            "split",
            str(src),
            "-o",
            str(out),
            "--tokenizer",
            str(tokenizer_dir),
            "--report",
            str(report),
            "--quiet",
            *extra,
        ]
    )
    assert code == 0
    return read_jsonl(out), json.loads(report.read_text(encoding="utf-8"))


@pytest.mark.parametrize("template", ["vicuna_v1.1", "chatml", "llama-2", "alpaca"])
def test_every_piece_fits_and_pieces_concatenate_to_the_original(
    tmp_path, run_cli, tiny_tokenizer_dir, tiny_tokenizer, template
):
    records = [long_conversation(f"c{i}", exchanges=3 + 4 * i) for i in range(4)]
    records.append(long_conversation("sys", 9, system="You are terse."))
    pieces, report = split(
        tmp_path,
        run_cli,
        tiny_tokenizer_dir,
        records,
        "--max-length",
        "400",
        "--template",
        template,
    )

    by_record: dict[str, list[dict]] = {}
    for piece in pieces:
        assert len(encode_conversation(piece, tiny_tokenizer, template).input_ids) <= 400
        rid, k = piece["id"].rsplit("_", 1)
        by_record.setdefault(rid, []).append(piece)
        assert int(k) == len(by_record[rid]) - 1
    for record in records:
        turns = record["conversations"]
        system = turns[:1] if turns[0]["from"] == "system" else []
        got = by_record[record["id"]]
        assert all(p["conversations"][: len(system)] == system for p in got)
        assert [t for p in got for t in p["conversations"][len(system) :]] == turns[len(system) :]
    assert len(by_record["c3"]) > 1  # the long ones really were split
    assert report["dropped"] == 0 and report["records_split"] >= 3


def test_conversation_that_fits_is_one_piece_with_suffix_0(tmp_path, run_cli, tiny_tokenizer_dir):
    record = long_conversation("short", 1)
    pieces, _ = split(tmp_path, run_cli, tiny_tokenizer_dir, [record], "--max-length", "2048")
    assert pieces == [{"id": "short_0", "conversations": record["conversations"]}]


def test_single_exchange_over_budget_is_reported_and_dropped_by_default(
    tmp_path, run_cli, tiny_tokenizer_dir
):
    record = long_conversation("x", 3)
    record["conversations"][3]["value"] = "Hello world. " * 400  # exchange 1 is huge
    pieces, report = split(tmp_path, run_cli, tiny_tokenizer_dir, [record], "--max-length", "300")
    assert [p["id"] for p in pieces] == ["x_0", "x_1"]
    kept = [t["value"] for p in pieces for t in p["conversations"]]
    assert record["conversations"][3]["value"] not in kept
    assert report["long_exchanges"] == 1
    assert (
        report["drops"][0]["reason"] == "exchange_too_long"
        and "dropped" in report["drops"][0]["detail"]
    )


def test_single_exchange_over_budget_can_be_truncated_to_fit(
    tmp_path, run_cli, tiny_tokenizer_dir, tiny_tokenizer
):
    record = long_conversation("t", 1)
    record["conversations"][1]["value"] = "Hello world. " * 400
    pieces, report = split(
        tmp_path,
        run_cli,
        tiny_tokenizer_dir,
        [record],
        "--max-length",
        "200",
        "--on-long",
        "truncate",
    )
    assert len(pieces) == 1
    reply = pieces[0]["conversations"][1]["value"]
    assert record["conversations"][1]["value"].startswith(reply) and len(reply) > 20
    assert 190 <= len(encode_conversation(pieces[0], tiny_tokenizer).input_ids) <= 200
    assert "truncated" in report["drops"][0]["detail"]


def test_records_that_cannot_be_split_are_counted(tmp_path, run_cli, tiny_tokenizer_dir):
    bad = {"id": "odd", "conversations": [{"from": "human", "value": "q"}]}
    pieces, report = split(tmp_path, run_cli, tiny_tokenizer_dir, [bad, "{oops"])
    assert pieces == []
    assert report["dropped_by_reason"] == {"invalid_json": 1, "not_alternating": 1}


def test_missing_tokenizer_is_a_clear_error(tmp_path, run_cli, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [long_conversation("a", 1)])
    code = run_cli(["data", "split", str(src), "-o", str(tmp_path / "o.jsonl"), "--quiet"])
    assert code == 2 and "--tokenizer" in capsys.readouterr().err


def test_long_conversation_is_tokenized_about_twice_not_once_per_piece_prefix(
    tiny_tokenizer, monkeypatch
):
    import fastchat_lite
    from data_prep.split import SplitConfig, Splitter

    calls = []
    real = fastchat_lite.encode_conversation

    def counting(turns, *args, **kwargs):
        calls.append(len(turns))
        return real(turns, *args, **kwargs)

    monkeypatch.setattr(fastchat_lite, "encode_conversation", counting)
    turns = long_conversation("big", 60)["conversations"]
    pieces, long = Splitter(tiny_tokenizer, SplitConfig(max_length=300)).split(turns)
    assert len(pieces) >= 8 and not long
    assert [t for p in pieces for t in p] == turns
    # The hook must see the work: an empty `calls` would pass the budget below vacuously.
    assert calls, "encode_conversation was never called through fastchat_lite"
    assert calls[0] == len(turns)  # one pass over the whole conversation ...
    assert len(calls) >= 1 + len(pieces)  # ... then every piece measured for real
    # ... and about one measurement per piece, not one per piece prefix
    assert sum(calls) <= 2 * len(turns) + 4 * len(pieces)
