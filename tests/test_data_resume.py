"""``data clean --resume``: a killed run continues from its last commit, byte for byte."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_fixtures import PYTHON_CODE_HTML, code_block, conversation, reply, write_jsonl

import fastchat_lite.cli as cli
from data_prep import clean as clean_module
from fastchat_lite.io import iter_records

WORDS = ["the", "model", "data", "value", "数据", "模型", "résumé", "🎉", "list", "error", "token"]
REAL_CLEAN = clean_module.Cleaner.clean


@pytest.fixture
def run_cli(monkeypatch):
    """``fastchat-lite`` with only the data command (other stages may not be installed)."""
    monkeypatch.setattr(cli, "COMMANDS", {"data": "data_prep.cli"})
    return cli.main


def dump_records(n: int, seed: int = 0) -> list:
    """ChatGPT-UI records with exact duplicates, near-duplicates and bad records spread out."""
    rng = random.Random(seed)
    records: list = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 160)))
        blocks = f"<p>{text} <code>var_{i}</code></p>" + code_block(PYTHON_CODE_HTML) * (i % 2)
        records.append(conversation(f"c{i}", (f"question {i}: {text[:80]}", reply(blocks))))
        if i % 50 == 7:  # an exact duplicate of a much earlier record
            records.append({**records[rng.randrange(len(records))], "id": f"dup{i}"})
        if i % 50 == 23:  # a near-duplicate (one word more) of a much earlier record
            old = rng.choice(records)
            turns = [dict(t) for t in old["conversations"]]
            turns[-1]["value"] += "<p>indeed</p>"
            records.append({"id": f"near{i}", "conversations": turns})
        if i % 50 == 41:
            records.append({"id": f"bad{i}", "conversations": [{"from": "robot", "value": "x"}]})
    return records


def write_dump(path: Path, records: list) -> Path:
    """A pretty-printed JSON list (the usual dump format)."""
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def clean_args(*extra: str) -> list[str]:
    """Run from a per-run directory with relative paths: the report header is then equal."""
    return ["data", "clean", "../dump.json", "-o", "out.jsonl", "--report", "report.json", *extra]


def reference_run(tmp_path, run_cli, monkeypatch, *flags: str) -> tuple[bytes, bytes]:
    ref = tmp_path / "reference"
    ref.mkdir()
    monkeypatch.chdir(ref)
    assert run_cli(clean_args("--quiet", *flags)) == 0
    return (ref / "out.jsonl").read_bytes(), (ref / "report.json").read_bytes()


def committed(work: Path) -> dict:
    return json.loads((work / "state.json").read_text(encoding="utf-8"))


def count_cleaned_records(monkeypatch) -> list[int]:
    """Indexes of the records cleaned from now on (in this process: use --workers 1)."""
    seen: list[int] = []

    def counting(self, raw):
        seen.append(raw.index)
        return REAL_CLEAN(self, raw)

    monkeypatch.setattr(clean_module.Cleaner, "clean", counting)
    return seen


def test_sigkilled_clean_resumes_to_byte_identical_output_and_report(
    tmp_path, run_cli, monkeypatch
):
    records = dump_records(2400)
    write_dump(tmp_path / "dump.json", records)
    flags = ("--near-dup", "0.9", "--chunk-size", "8", "--checkpoint-every", "100")
    want_out, want_report = reference_run(tmp_path, run_cli, monkeypatch, *flags)

    run = tmp_path / "killed"
    run.mkdir()
    code = "import fastchat_lite.cli as c, sys; c.COMMANDS = {'data': 'data_prep.cli'}; "
    code += "sys.exit(c.main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, *clean_args("--quiet", "--workers", "2", *flags)]
    log = (tmp_path / "killed.log").open("wb")
    proc = subprocess.Popen(argv, cwd=run, start_new_session=True, stderr=log)
    work = run / "out.jsonl.partial"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (work / "state.json").is_file() and committed(work)["records"] >= 500:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed (make it longer)"
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its worker processes
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in run.iterdir()) == ["out.jsonl.partial"]  # nothing half-written
    done_before = committed(work)["records"]
    assert 500 <= done_before < len(records)

    monkeypatch.chdir(run)
    cleaned = count_cleaned_records(monkeypatch)
    assert run_cli(clean_args("--quiet", "--resume", *flags)) == 0

    assert cleaned == list(range(done_before, len(records)))  # nothing cleaned twice
    assert (run / "out.jsonl").read_bytes() == want_out
    assert (run / "report.json").read_bytes() == want_report
    assert sorted(p.name for p in run.iterdir()) == ["out.jsonl", "report.json"]
    reasons = {d["reason"] for d in json.loads(want_report)["drops"]}
    assert reasons == {"duplicate", "near_duplicate", "unknown_role"}


def test_failure_after_some_chunks_resumes_with_duplicate_state_and_cuts_uncommitted_tail(
    tmp_path, run_cli, monkeypatch, capsys
):
    records = dump_records(300, seed=1)
    write_dump(tmp_path / "dump.json", records)
    flags = ("--chunk-size", "4", "--checkpoint-every", "25")
    want_out, want_report = reference_run(tmp_path, run_cli, monkeypatch, *flags)
    run = tmp_path / "failed"
    run.mkdir()
    monkeypatch.chdir(run)

    def fail_at_record_230(self, raw):
        if raw.index == 230:
            raise RuntimeError("injected failure")
        return REAL_CLEAN(self, raw)

    monkeypatch.setattr(clean_module.Cleaner, "clean", fail_at_record_230)
    with pytest.raises(RuntimeError, match="injected"):
        run_cli(clean_args("--quiet", *flags))
    work = run / "out.jsonl.partial"
    state = committed(work)
    assert state["records"] == 225  # the last commit before record 230
    assert (work / "kept.jsonl").stat().st_size > state["files"]["kept.jsonl"]  # uncommitted
    duplicates_after = [d for d in json.loads(want_report)["drops"] if d["reason"] == "duplicate"]
    assert any(d["index"] > 230 for d in duplicates_after)  # decided by hashes from before

    cleaned = count_cleaned_records(monkeypatch)  # replaces the failing Cleaner.clean
    assert run_cli(clean_args("--quiet", "--resume", *flags)) == 0
    assert cleaned[0] == 225 and len(cleaned) == len(records) - 225
    assert (run / "out.jsonl").read_bytes() == want_out
    assert (run / "report.json").read_bytes() == want_report
    assert "resuming" in capsys.readouterr().err
    assert not work.exists()


def interrupted(tmp_path, run_cli, monkeypatch, *flags: str) -> Path:
    """A run of dump.json in tmp_path/run that failed at record 40, its work dir left."""
    if not (tmp_path / "dump.json").exists():
        write_dump(tmp_path / "dump.json", dump_records(60))
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    monkeypatch.chdir(run)

    def fail(self, raw):
        if raw.index == 40:
            raise RuntimeError("injected failure")
        return REAL_CLEAN(self, raw)

    monkeypatch.setattr(clean_module.Cleaner, "clean", fail)
    with pytest.raises(RuntimeError):
        run_cli(clean_args("--quiet", "--chunk-size", "5", "--checkpoint-every", "10", *flags))
    monkeypatch.setattr(clean_module.Cleaner, "clean", REAL_CLEAN)
    assert committed(run / "out.jsonl.partial")["records"] == 40
    return run


def test_resume_with_a_changed_input_is_refused(tmp_path, run_cli, monkeypatch, capsys):
    run = interrupted(tmp_path, run_cli, monkeypatch)
    state_before = (run / "out.jsonl.partial" / "state.json").read_bytes()
    write_dump(tmp_path / "dump.json", dump_records(61))

    assert run_cli(clean_args("--quiet", "--resume")) == 2

    err = capsys.readouterr().err
    assert "started from another input file (head_blake2b" in err and "without --resume" in err
    assert (run / "out.jsonl.partial" / "state.json").read_bytes() == state_before
    assert not (run / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("first", "second", "named"),
    [
        ((), ("--min-turns", "4"), "min_turns"),
        ((), ("--near-dup", "0.9"), "near_dup"),
        ((), ("--blocked-phrases", "indeed"), "blocked_phrases"),
    ],
)
def test_resume_with_changed_options_is_refused(
    tmp_path, run_cli, monkeypatch, capsys, first, second, named
):
    interrupted(tmp_path, run_cli, monkeypatch, *first)
    assert run_cli(clean_args("--quiet", "--resume", *second)) == 2
    err = capsys.readouterr().err
    assert "started with other options" in err and named in err


def test_resume_may_change_workers_and_chunking(tmp_path, run_cli, monkeypatch):
    run = interrupted(tmp_path, run_cli, monkeypatch)
    flags = ("--resume", "--workers", "2", "--chunk-size", "3", "--checkpoint-every", "7")
    assert run_cli(clean_args("--quiet", *flags)) == 0
    ids = [json.loads(line)["id"] for line in (run / "out.jsonl").read_text().splitlines()]
    assert ids[:3] == ["c0", "c1", "c2"] and len(ids) == len(set(ids))


def test_rerun_without_resume_starts_over(tmp_path, run_cli, monkeypatch, capsys):
    run = interrupted(tmp_path, run_cli, monkeypatch)
    cleaned = count_cleaned_records(monkeypatch)
    assert run_cli(clean_args("--quiet")) == 0
    assert cleaned[0] == 0
    assert "discarding" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["out.jsonl", "report.json"]


def test_resume_with_nothing_to_resume_starts_from_the_beginning(
    tmp_path, run_cli, monkeypatch, capsys
):
    write_dump(tmp_path / "dump.json", dump_records(20))
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    assert run_cli(clean_args("--quiet", "--resume")) == 0
    assert "nothing to resume" in capsys.readouterr().err
    assert len((tmp_path / "run" / "out.jsonl").read_text().splitlines()) > 15


@pytest.mark.parametrize("kind", ["json_list", "jsonl"])
def test_iter_records_resumes_after_any_record_end(tmp_path, kind):
    rng = random.Random(5)
    values = [{"id": i, "t": "é数🎉x" * rng.randint(0, 40)} for i in range(120)]
    path = tmp_path / "in"
    if kind == "json_list":  # BOM, CRLF, odd separators: byte offsets must still be exact
        sep = [",\r\n", ", ", "\n,\t"]
        body = "".join(
            (sep[i % 3] if i else "") + json.dumps(v, ensure_ascii=False)
            for i, v in enumerate(values)
        )
        path.write_bytes(("\ufeff \r\n[" + body + "\r\n]\r\n").encode("utf-8"))
    else:
        lines = [json.dumps(v, ensure_ascii=False) for v in values]
        lines.insert(30, "")  # a blank line is skipped and not counted
        lines.insert(60, "{not json")
        values.insert(59, None)
        path.write_bytes(("\r\n".join(lines) + "\n").encode("utf-8"))
    data = path.read_bytes()
    first = list(iter_records(path))
    assert [r.value for r in first] == values
    assert first[-1].end == (len(data) if kind == "jsonl" else len(data.rstrip(b"\r\n]")))

    for record in first[::7]:
        assert data[: record.end].rstrip().endswith(b"}") or record.value is None
        rest = list(iter_records(path, record.end, record.index + 1))
        assert [r.value for r in rest] == values[record.index + 1 :]
        assert [r.index for r in rest] == list(range(record.index + 1, len(values)))
        assert [r.end for r in rest] == [r.end for r in first[record.index + 1 :]]


def test_json_list_offsets_survive_small_read_chunks(tmp_path):
    from fastchat_lite.io import _iter_json_list

    values = [{"id": i, "t": "数据🎉" * i} for i in range(40)]
    path = tmp_path / "in.json"
    path.write_text(json.dumps(values, ensure_ascii=False, indent=2), encoding="utf-8")
    data = path.read_bytes()
    for chunk in (5, 17, 64):
        got = list(_iter_json_list(path, chunk))
        assert [r.value for r in got] == values
        for r in got:
            assert data[: r.end].endswith(b"}")
            rest = list(_iter_json_list(path, chunk, start=r.end, first_index=r.index + 1))
            assert [x.value for x in rest] == values[r.index + 1 :]


def test_bad_jsonl_line_has_an_end_offset_too(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", ["{bad", json.dumps({"id": "a"})])
    records = list(iter_records(path))
    assert records[0].error and records[0].end == len(b"{bad\n")
    assert records[1].end == path.stat().st_size
