"""Data commands under hostile input and hostile operators: absurd nesting, ``kill``, out of
range flags, repeated or odd ids, control characters, and a umask other users must read by."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_fixtures import PYTHON_CODE_HTML, code_block, conversation, read_jsonl, reply

import fastchat_lite.cli as cli

DATA_ONLY = "import fastchat_lite.cli as c, sys; c.COMMANDS = {'data': 'data_prep.cli'}; "
CLI_CODE = DATA_ONLY + "sys.exit(c.main(sys.argv[1:]))"


@pytest.fixture
def run_cli(monkeypatch):
    """``fastchat-lite`` with only the data command (other stages may not be installed)."""
    monkeypatch.setattr(cli, "COMMANDS", {"data": "data_prep.cli"})
    return cli.main


def write_input(path: Path, texts: list[str], kind: str) -> Path:
    """Records given as JSON texts, as JSON lines or as one (pretty) JSON list."""
    if kind == "jsonl":
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    else:
        path.write_text("[\n " + ",\n ".join(texts) + "\n]\n", encoding="utf-8")
    return path


def command_args(command: str, src: Path, tmp_path: Path, tokenizer_dir: Path) -> list[str]:
    if command == "stats":
        return ["data", "stats", str(src), "--json", str(tmp_path / "stats.json")]
    args = ["data", command, str(src), "-o", str(tmp_path / "out.jsonl"), "--quiet"]
    args += ["--report", str(tmp_path / "report.json")]
    return args + (["--tokenizer", str(tokenizer_dir)] if command == "split" else [])


@pytest.mark.parametrize("kind", ["jsonl", "json_list"])
@pytest.mark.parametrize("command", ["clean", "split", "convert", "stats"])
def test_a_record_nested_100000_levels_deep_is_a_counted_invalid_json_drop(
    tmp_path, run_cli, capsys, tiny_tokenizer_dir, command, kind
):
    good = [json.dumps(conversation(f"g{i}", (f"q{i} [{{", "an answer ]}"))) for i in range(2)]
    too_deep = "[" * 100_000 + "]" * 100_000
    deep_in_a_string = json.dumps({"id": "deep", "conversations": [[[[[[0]]]]]] * 30})
    src = write_input(tmp_path / "in", [good[0], too_deep, deep_in_a_string, good[1]], kind)

    assert run_cli(command_args(command, src, tmp_path, tiny_tokenizer_dir)) == 0

    assert "Traceback" not in capsys.readouterr().err
    if command == "stats":
        stats = json.loads((tmp_path / "stats.json").read_text())
        assert stats["records"] == 4 and stats["conversations"] == 2
        assert stats["unusable"]["invalid_json"] == 1
        return
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["read"] == 4 and report["kept"] == 2
    drops = {d["index"]: d for d in report["drops"]}
    assert drops[1]["reason"] == "invalid_json" and "nested" in drops[1]["detail"]
    assert drops[2]["reason"] == "bad_shape"  # 30 lists 6 deep: a shape problem, not JSON's


def test_deep_record_read_in_small_chunks_is_skipped_whole(tmp_path):
    from fastchat_lite.io import _iter_json_list

    texts = ['{"a": "]"}', "[" * 3000 + '"]\\"["' + "]" * 3000, '{"b": 1}']
    src = write_input(tmp_path / "in.json", texts, "json_list")
    for chunk in (64, 1000, 1 << 20):
        got = list(_iter_json_list(src, chunk))
        assert [(r.value, r.error) for r in got] == [
            ({"a": "]"}, None),
            (None, "invalid JSON: nested more than 100 levels deep"),
            ({"b": 1}, None),
        ]
        assert src.read_bytes()[: got[1].end].endswith(b"]")


def big_dump(path: Path, n: int) -> Path:
    """A JSON list of ChatGPT-UI records, each a few KB of HTML to convert."""
    with path.open("w", encoding="utf-8") as out:
        out.write("[")
        for i in range(n):
            blocks = f"<p>Answer {i} " + "<strong>bold</strong> text " * 40 + "</p>"
            record = conversation(f"c{i}", (f"q{i}", reply(blocks, code_block(PYTHON_CODE_HTML))))
            out.write(("," if i else "") + json.dumps(record))
        out.write("]")
    return path


def wait_until(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not condition():
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before {what} (make the input bigger)"


def terminate_mid_run(argv: list[str], cwd: Path, condition, what: str) -> tuple[int, str]:
    """Start the CLI, SIGTERM only its main process (as ``kill PID`` / ``docker stop`` do) once
    ``condition()`` holds; returns (exit code, stderr) after checking nothing of it is left."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI_CODE, *argv],
        cwd=cwd,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(condition, proc, what)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the workers are gone with their parent
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("a worker process outlived the terminated run")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err


def test_sigterm_mid_clean_with_workers_exits_143_without_temp_files_or_tracebacks(tmp_path):
    big_dump(tmp_path / "dump.json", 6000)
    state = tmp_path / "out.jsonl.partial" / "state.json"

    def some_committed() -> bool:
        try:
            return json.loads(state.read_text())["records"] >= 300
        except (OSError, ValueError):  # not there yet, or replaced while read
            return False

    flags = ["--workers", "2", "--chunk-size", "8", "--checkpoint-every", "100"]
    argv = ["data", "clean", "dump.json", "-o", "out.jsonl", "--report", "r.json", *flags]
    code, err = terminate_mid_run(argv, tmp_path, some_committed, "300 records were committed")

    assert code == 143
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert "--resume" in err  # the one line saying how to go on
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.json", "out.jsonl.partial"]


def test_sigterm_mid_convert_leaves_no_hidden_temp_file_beside_the_output(tmp_path):
    with (tmp_path / "alpaca.jsonl").open("w") as out:
        for i in range(200_000):
            out.write(json.dumps({"instruction": f"task {i} " * 20, "output": "x " * 50}) + "\n")

    def temp_file_growing() -> bool:
        return any(p.stat().st_size > 1 << 20 for p in tmp_path.glob(".out.jsonl.*.tmp"))

    argv = ["data", "convert", "alpaca.jsonl", "-o", "out.jsonl", "--quiet"]
    code, err = terminate_mid_run(argv, tmp_path, temp_file_growing, "OUT's temp file grew")

    assert code == 143 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpaca.jsonl"]


@pytest.mark.parametrize(
    ("command", "flag", "value", "allowed"),
    [
        ("split", "--max-length", "0", ">= 1"),
        ("split", "--max-length", "-5", ">= 1"),
        ("clean", "--workers", "-1", ">= 0"),
        ("clean", "--min-turns", "-1", ">= 0"),
        ("clean", "--min-chars", "-3", ">= 0"),
        ("clean", "--max-chars", "0", ">= 1"),
        ("clean", "--chunk-size", "0", ">= 1"),
        ("clean", "--checkpoint-every", "0", ">= 1"),
        ("clean", "--near-dup", "nan", "> 0 and <= 1"),
    ],
)
def test_out_of_range_numeric_flag_is_an_argparse_error_naming_flag_and_range(
    tmp_path, run_cli, capsys, command, flag, value, allowed
):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(conversation("a", ("q", "a"))) + "\n")
    argv = ["data", command, str(src), "-o", str(tmp_path / "out.jsonl"), f"{flag}={value}"]

    with pytest.raises(SystemExit) as exited:
        run_cli(argv + (["--tokenizer", "unused"] if command == "split" else []))

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: must be {allowed}, got {value}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_out_of_range_value_in_a_yaml_config_is_a_one_line_error(tmp_path, run_cli, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(conversation("a", ("q", "a"))) + "\n")
    config = tmp_path / "split.yaml"
    config.write_text("max_length: 0\ntokenizer: unused\n")
    argv = ["data", "split", str(src), "-o", str(tmp_path / "o.jsonl"), "--config", str(config)]

    assert run_cli(argv) == 2

    err = capsys.readouterr().err.strip()
    assert err.endswith("max_length (--max-length) must be >= 1, got 0") and "\n" not in err


def test_range_metadata_is_checked_for_any_config_dataclass():
    import argparse
    from dataclasses import dataclass, field

    from fastchat_lite.config import add_dataclass_arguments, build_config

    @dataclass
    class Knobs:
        rate: float = field(default=0.5, metadata={"help": "r", "gt": 0, "max": 1})
        sizes: list[int] = field(default_factory=list, metadata={"help": "s", "min": 1})
        limit: int | None = field(default=None, metadata={"help": "l", "min": 0})

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_arguments(parser, Knobs)
    ok = build_config(Knobs, parser.parse_args(["--rate", "1", "--sizes", "1", "2"]))
    assert (ok.rate, ok.sizes, ok.limit) == (1.0, [1, 2], None)
    for argv in (["--rate", "0"], ["--sizes", "3", "0"], ["--limit", "-1"], ["--rate", "x"]):
        with pytest.raises(argparse.ArgumentError):
            parser.parse_args(argv)


ID_RECORDS = [
    ("a", "first a"),
    ("a", "second a"),
    (7, "int seven"),
    ("7", "string seven"),
    (1.5, "a float"),
    (True, "a bool"),
    (None, "a null"),
    ("<missing>", "no id at all"),
    ("a#2", "an id that looks suffixed"),
    ("a", "third a"),
]


def id_dump(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for rid, text in ID_RECORDS:
            record = conversation(None if rid == "<missing>" else rid, (text, f"reply to {text}"))
            if rid is None:
                record["id"] = None
            out.write(json.dumps(record) + "\n")
    return path


@pytest.mark.parametrize("command", ["clean", "convert"])
def test_repeated_ids_get_a_suffix_and_scalar_ids_become_their_json_text(
    tmp_path, run_cli, command
):
    src = id_dump(tmp_path / "in.jsonl")
    out, report = tmp_path / "out.jsonl", tmp_path / "r.json"
    argv = ["data", command, str(src), "-o", str(out), "--report", str(report), "--quiet"]

    assert run_cli(argv) == 0

    assert [r["id"] for r in read_jsonl(out)] == [
        "a", "a#2", "7", "7#2", "1.5", "true", "rec6", "rec7", "a#2#2", "a#3",
    ]  # fmt: skip
    data = json.loads(report.read_text())
    assert data["kept"] == 10 and data["duplicate_ids_suffixed"] == 4


@pytest.mark.parametrize("command", ["clean", "convert"])
def test_duplicate_ids_drop_mode_drops_and_reports_them(tmp_path, run_cli, command):
    src = id_dump(tmp_path / "in.jsonl")
    out, report = tmp_path / "out.jsonl", tmp_path / "r.json"
    argv = ["data", command, str(src), "-o", str(out), "--report", str(report), "--quiet"]

    assert run_cli([*argv, "--duplicate-ids", "drop"]) == 0

    kept = [r["id"] for r in read_jsonl(out)]
    assert kept == ["a", "7", "1.5", "true", "rec6", "rec7", "a#2"]
    data = json.loads(report.read_text())
    assert data["dropped_by_reason"] == {"duplicate_id": 3}
    assert [(d["index"], d["id"]) for d in data["drops"]] == [(1, "a"), (3, "7"), (9, "a")]


def test_duplicate_ids_in_split_input_get_unique_piece_ids(tmp_path, run_cli, tiny_tokenizer_dir):
    src = id_dump(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    argv = ["data", "split", str(src), "-o", str(out), "--quiet"]
    assert run_cli([*argv, "--tokenizer", str(tiny_tokenizer_dir)]) == 0
    ids = [r["id"] for r in read_jsonl(out)]
    assert ids[:4] == ["a_0", "a#2_0", "7_0", "7#2_0"] and len(set(ids)) == len(ID_RECORDS)


def test_control_characters_are_removed_from_turns_and_counted(tmp_path, run_cli):
    human = "he\x00llo\x07 world\r\nsecond\rthird\tcol"
    gpt = "\x1b[1mbold\x1b[0m\x7f answer\x00"
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(conversation("c", (human, gpt))) + "\n")
    out, report = tmp_path / "out.jsonl", tmp_path / "r.json"

    assert run_cli(["data", "clean", str(src), "-o", str(out), "--report", str(report)]) == 0

    (record,) = read_jsonl(out)
    assert [t["value"] for t in record["conversations"]] == [
        "hello world\nsecond\nthird\tcol",
        "[1mbold[0m answer",
    ]
    assert json.loads(report.read_text())["control_chars_removed"] == 6


def test_a_turn_of_only_control_characters_is_an_empty_message_drop(tmp_path, run_cli):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(conversation("c", ("question", "\x00\x00"))) + "\n")
    src.write_text(src.read_text() + json.dumps(conversation("ok", ("q", "a"))) + "\n")
    out, report = tmp_path / "out.jsonl", tmp_path / "r.json"
    assert run_cli(["data", "clean", str(src), "-o", str(out), "--report", str(report)]) == 0
    assert json.loads(report.read_text())["dropped_by_reason"] == {"empty_message": 1}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o027])
def test_outputs_and_checkpoint_files_get_the_umask_permissions(tmp_path, umask):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(conversation("c", ("q", "a"))) + "\n")
    clean = ["data", "clean", "in.jsonl", "-o", "out/clean.jsonl", "--report", "report.json"]
    subprocess.run([sys.executable, "-c", CLI_CODE, *clean, "--quiet"], cwd=tmp_path,
                   umask=umask, check=True)  # fmt: skip
    convert = ["data", "convert", "in.jsonl", "-o", "conv.jsonl", "--quiet"]
    subprocess.run([sys.executable, "-c", CLI_CODE, *convert], cwd=tmp_path, umask=umask,
                   check=True)  # fmt: skip
    # The resume sidecar of an interrupted clean: its state.json is written atomically too.
    sidecar = (
        "from data_prep.checkpoint import WorkDir\n"
        "from data_prep.drops import DropLog, Tally\n"
        "WorkDir('side/out.jsonl').open({'input': {}, 'options': {}}, False, DropLog(Tally()))\n"
    )
    subprocess.run([sys.executable, "-c", sidecar], cwd=tmp_path, umask=umask, check=True)

    want = 0o666 & ~umask
    files = ["out/clean.jsonl", "report.json", "conv.jsonl"]
    files += [f"side/out.jsonl.partial/{name}" for name in ("state.json", "kept.jsonl")]
    assert {name: oct(mode(tmp_path / name)) for name in files} == dict.fromkeys(files, oct(want))
