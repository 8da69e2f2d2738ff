from __future__ import annotations

import json

import pytest

from fastchat_lite.errors import InputFileError
from fastchat_lite.io import atomic_write, iter_records, read_records, write_jsonl


def test_json_list_is_streamed_record_by_record_across_chunk_boundaries(tmp_path):
    records = [{"id": str(i), "text": "x" * (i * 37 % 500), "zh": "你好🎉"} for i in range(300)]
    path = tmp_path / "in.json"
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    from fastchat_lite import io as io_module

    got = list(io_module._iter_json_list(path, chunk_size=64))
    assert [r.value for r in got] == records
    assert [r.index for r in got] == list(range(300))


def test_jsonl_bad_lines_are_reported_per_record_not_fatal(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "a"}\n{not json}\n\xff\xfe{"id": "b"}\n\n{"id": "c"}\n')
    got = list(iter_records(path))
    assert [r.value for r in got] == [{"id": "a"}, None, None, {"id": "c"}]
    assert "invalid JSON" in got[1].error and "UTF-8" in got[2].error


def test_unreadable_file_as_a_whole_raises_input_file_error(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        iter_records(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("hello")
    with pytest.raises(InputFileError, match="expected a JSON list"):
        iter_records(bad)
    truncated = tmp_path / "trunc.json"
    truncated.write_text('[{"id": 1}, {"id": ')
    with pytest.raises(InputFileError, match="record 1"):
        read_records(truncated)


def test_atomic_write_leaves_no_file_when_interrupted(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("partial\n")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_jsonl_replaces_previous_output_in_one_step(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    assert write_jsonl(target, iter([{"a": 1}, {"b": "é"}])) == 2
    assert target.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "é"}\n'
