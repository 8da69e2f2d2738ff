"""``fastchat-lite data clean`` end to end: a mixed dump, the report, bad input, atomicity."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter

import pytest
from data_fixtures import (
    PYTHON_CODE_HTML,
    code_block,
    conversation,
    read_jsonl,
    reply,
    turn,
    write_jsonl,
)

import fastchat_lite.cli as cli
from data_prep import clean as clean_module


@pytest.fixture
def run_cli(monkeypatch):
    """``fastchat-lite`` with only the data command (other stages may not be installed)."""
    monkeypatch.setattr(cli, "COMMANDS", {"data": "data_prep.cli"})
    return cli.main


def mixed_records(n_good: int = 240, seed: int = 0) -> tuple[list, Counter]:
    """Good ChatGPT-UI records with bad ones mixed in; returns (records, expected drops)."""
    rng = random.Random(seed)
    records: list = []
    expected: Counter = Counter()
    bad_makers = {
        "bad_shape": lambda i: {"id": f"bad{i}", "conversations": [{"from": "human"}]},
        "unknown_role": lambda i: {"id": f"bad{i}", "conversations": [turn("bot", "x")]},
        "empty_message": lambda i: conversation(f"bad{i}", (" ", "answer")),
        "not_alternating": lambda i: {
            "id": f"bad{i}",
            "conversations": [turn("human", "a"), turn("gpt", "b"), turn("gpt", "c")],
        },
        "too_short": lambda i: {"id": f"bad{i}", "conversations": [turn("human", "q")]},
        "blocked_phrase": lambda i: conversation(f"bad{i}", ("who?", "I'm ChatGPT.")),
    }
    for i in range(n_good):
        answer = reply(
            f"<p>Answer {i}: use <code>my_var_{i}</code> and <strong>care</strong>.</p>",
            code_block(PYTHON_CODE_HTML) if i % 3 == 0 else "<ul><li>one</li><li>两个 🎉</li></ul>",
        )
        records.append(conversation(f"good{i}", (f"Question {i}: what is <div>?", answer)))
        if i % 40 == 5:  # an exact duplicate of an earlier record, under another id
            records.append({**records[rng.randrange(len(records) - 1)], "id": f"dup{i}"})
            expected["duplicate"] += 1
        if i % 4 == 1:
            reason = rng.choice(sorted(bad_makers))
            records.append(bad_makers[reason](i))
            expected[reason] += 1
    return records, expected


def test_mixed_dump_counts_every_drop_and_reports_every_dropped_id(tmp_path, run_cli, capsys):
    records, expected = mixed_records()
    src = tmp_path / "dump.json"
    src.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    out, report = tmp_path / "clean.jsonl", tmp_path / "report.json"

    code = run_cli(
        [
            "data",
            "clean",
            str(src),
            "-o",
            str(out),
            "--report",
            str(report),
            "--workers",
            "2",
            "--chunk-size",
            "16",
        ]
    )

    assert code == 0
    kept = read_jsonl(out)
    assert [r["id"] for r in kept] == [f"good{i}" for i in range(240)]
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["read"] == len(records) and data["kept"] == 240
    assert data["dropped_by_reason"] == dict(sorted(expected.items()))
    assert Counter(d["reason"] for d in data["drops"]) == expected
    assert all(d["id"].startswith(("bad", "dup")) for d in data["drops"])
    assert "kept" in capsys.readouterr().err  # the summary table
    assert kept[0]["conversations"][0]["value"] == "Question 0: what is <div>?"
    assert "```python" in kept[0]["conversations"][1]["value"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"hello world", "expected a JSON list"),
        (b"[{]", "not valid JSON"),
        (b'{\n  "data": [\n    {"id": "a"}\n  ]\n}\n', "the top level is one JSON object"),
        (b"{oops\n{nope\n", "no record could be parsed"),
    ],
)
def test_unreadable_input_exits_2_with_one_line_and_no_output(
    tmp_path, run_cli, capsys, content, message
):
    src = tmp_path / "in.json"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out.jsonl"
    assert run_cli(["data", "clean", str(src), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == (["in.json"] if content else [])


def test_unwritable_output_is_a_one_line_error(tmp_path, run_cli, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(conversation("a", ("q", "a"))) + "\n")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert run_cli(["data", "clean", str(src), "-o", str(blocker / "out.jsonl"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_truncated_json_list_keeps_what_was_read_and_warns(tmp_path, run_cli, capsys):
    good = [conversation(f"g{i}", (f"q{i}", "a")) for i in range(3)]
    text = json.dumps(good)[:-1] + ', {"id": "cut", "conversations": [{"from": "hu'
    src = tmp_path / "in.json"
    src.write_text(text, encoding="utf-8")
    out, report = tmp_path / "out.jsonl", tmp_path / "r.json"
    assert run_cli(["data", "clean", str(src), "-o", str(out), "--report", str(report)]) == 0
    assert [r["id"] for r in read_jsonl(out)] == ["g0", "g1", "g2"]
    drops = json.loads(report.read_text())["drops"]
    assert [(d["index"], d["reason"]) for d in drops] == [(3, "unreadable_rest")]
    assert "warning: input broke off after record 2" in capsys.readouterr().err


def test_ten_megabyte_message_is_a_counted_drop(tmp_path, run_cli):
    src = tmp_path / "in.jsonl"
    big = conversation("big", ("q", "<p>" + "y" * 10_000_000 + "</p>"))
    src.write_text(json.dumps(big) + "\n" + json.dumps(conversation("ok", ("q", "a"))) + "\n")
    out, report = tmp_path / "out.jsonl", tmp_path / "r.json"
    assert (
        run_cli(["data", "clean", str(src), "-o", str(out), "--report", str(report), "--quiet"])
        == 0
    )
    assert [r["id"] for r in read_jsonl(out)] == ["ok"]
    assert json.loads(report.read_text())["dropped_by_reason"] == {"message_too_long": 1}


def test_a_crash_mid_run_leaves_no_output_and_keeps_the_old_one(tmp_path, run_cli, monkeypatch):
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps(conversation(f"c{i}", ("q", f"a{i}"))) + "\n" for i in range(50))
    )
    out = tmp_path / "out.jsonl"
    out.write_text("previous run\n")
    real = clean_module.Cleaner.clean

    def explode(self, raw):
        if raw.index == 30:
            raise RuntimeError("disk on fire")
        return real(self, raw)

    monkeypatch.setattr(clean_module.Cleaner, "clean", explode)
    with pytest.raises(RuntimeError):
        run_cli(["data", "clean", str(src), "-o", str(out), "--quiet", "--chunk-size", "4"])
    assert out.read_text() == "previous run\n"
    # No temp file beside OUT; only the work dir that --resume continues from.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.jsonl",
        "out.jsonl",
        "out.jsonl.partial",
    ]


def _peak_rss_kib_of_clean(src, out) -> int:
    code = (
        "import resource, fastchat_lite.cli as c\n"
        "c.COMMANDS = {'data': 'data_prep.cli'}\n"
        f"assert c.main(['data', 'clean', {str(src)!r}, '-o', {str(out)!r}, '--quiet']) == 0\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def test_memory_does_not_grow_with_the_input(tmp_path):
    def dump(path, n):
        with path.open("w", encoding="utf-8") as f:
            f.write("[")
            for i in range(n):
                text = f"reply {i} " + "lorem ipsum 你好 " * 600  # ~10 KB per conversation
                f.write(("," if i else "") + json.dumps(conversation(f"m{i}", (f"q{i}", text))))
            f.write("]")
        return path

    small = _peak_rss_kib_of_clean(dump(tmp_path / "small.json", 200), tmp_path / "s.jsonl")
    big = _peak_rss_kib_of_clean(dump(tmp_path / "big.json", 4000), tmp_path / "b.jsonl")
    assert (tmp_path / "big.json").stat().st_size > 30_000_000
    assert big - small < 20_000, (small, big)  # KiB: loading 30 MB whole would add >100 MB


@pytest.mark.parametrize("kind", ["json_list", "jsonl"])
def test_progress_bar_counts_input_bytes_against_the_file_size(tmp_path, monkeypatch, kind):
    import io

    import tqdm

    from data_prep.drops import DropLog, Tally

    bars = []

    class VisibleBar(tqdm.tqdm):  # pytest's stderr is no terminal: tqdm would hide itself
        def __init__(self, *args, **kwargs):
            kwargs.update(disable=False, file=io.StringIO(), mininterval=0, miniters=1)
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(tqdm, "tqdm", VisibleBar)
    records, _ = mixed_records(60)
    src = tmp_path / "in"
    if kind == "json_list":
        src.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        write_jsonl(src, records)
    with DropLog(Tally()) as drops:
        clean_module.clean_file(src, tmp_path / "out.jsonl", clean_module.CleanConfig(), drops)

    (bar,) = bars
    size = src.stat().st_size
    assert (bar.total, bar.unit, bar.unit_scale) == (size, "B", True)
    assert size - 3 <= bar.n <= size  # all records read; only the closing "]" may be left
    shown = bar.fp.getvalue()
    assert "<00:00" in shown  # the ETA, once some of the total is done
    assert f"{len(records):,} conv" in shown
