"""Spot-instance drills: kill -9 then resume is exact, SIGTERM saves, half-written dirs skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastchat_lite.errors import FastChatLiteError
from train.checkpoint import MARKER, complete_checkpoints, prune, resolve_resume
from train.loop import KILL_AT_STEP_ENV
from train.recipe import train
from train.synthetic import synthetic_conversations

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.json"
    records = synthetic_conversations(40, seed=5, median_words=8, max_words=40)
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _flags(model_dir: Path, data: Path, out: Path, **extra: object) -> list[str]:
    options = dict(
        model_name_or_path=model_dir, data_path=data, output_dir=out, max_length=256,
        max_steps=12, per_device_train_batch_size=2, gradient_accumulation_steps=2,
        learning_rate=3e-3, logging_steps=1, save_steps=6, save_total_limit=3, seed=3,
    )  # fmt: skip
    options.update(extra)
    return [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def _config(flags: list[str]):
    import argparse

    from train.cli import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", *flags])
    from fastchat_lite.config import build_config
    from train.config import TrainConfig

    return build_config(TrainConfig, args)


def _launch(flags: list[str], env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "train", "--no-progress", *flags],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(out / "model.safetensors")


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_weights(tiny_model_dir, data_file, tmp_path):
    reference = tmp_path / "reference"
    train(_config(_flags(tiny_model_dir, data_file, reference)), progress=False)

    out = tmp_path / "killed"
    proc = _launch(_flags(tiny_model_dir, data_file, out), {KILL_AT_STEP_ENV: "8"})
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, log
    assert [s for s, _ in complete_checkpoints(out)] == [6]
    assert not (out / "model.safetensors").exists()
    half = out / "checkpoints" / "step-9"  # as if the process died while writing step 9
    half.mkdir()
    (half / "trainable.safetensors").write_bytes(b"\0" * 10)

    summary = train(_config(_flags(tiny_model_dir, data_file, out)), progress=False)
    assert summary["status"] == "finished"
    want, got = _weights(reference), _weights(out)
    assert want.keys() == got.keys()
    for name in want:
        assert (want[name] - got[name]).abs().max().item() < 1e-6, name
    steps = [
        json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, 13))


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_at_the_step_end_and_exits_0(
    tiny_model_dir, data_file, tmp_path
):
    out = tmp_path / "preempted"
    proc = _launch(_flags(tiny_model_dir, data_file, out, max_steps=100000, save_steps=0))
    log_file = out / "train_log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log_file.is_file() and len(log_file.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log
    assert "stopped by SIGTERM" in log
    ((step, path),) = complete_checkpoints(out)
    state = json.loads((path / "trainer_state.json").read_text())
    assert state["step"] == step >= 3
    assert not (out / "model.safetensors").exists()


def _fake_checkpoint(root: Path, step: int, complete: bool) -> Path:
    path = root / "checkpoints" / f"step-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / MARKER).write_text("ok\n")
    return path


def test_resume_auto_skips_half_written_and_temp_checkpoints(tmp_path):
    _fake_checkpoint(tmp_path, 4, complete=True)
    _fake_checkpoint(tmp_path, 8, complete=True)
    _fake_checkpoint(tmp_path, 12, complete=False)
    (tmp_path / "checkpoints" / ".step-16.tmp").mkdir()
    assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoints" / "step-8"
    assert resolve_resume("never", tmp_path) is None
    with pytest.raises(FastChatLiteError, match="not a complete checkpoint"):
        resolve_resume(str(tmp_path / "checkpoints" / "step-12"), tmp_path)


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path):
    for step in (5, 10, 15, 20):
        _fake_checkpoint(tmp_path, step, complete=True)
    prune(tmp_path, keep=2)
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [15, 20]
    prune(tmp_path, keep=0)
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [15, 20]


def test_resume_with_different_data_settings_is_refused(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "run"
    train(_config(_flags(tiny_model_dir, data_file, out, max_steps=2, save_steps=2)),
          progress=False)  # fmt: skip
    changed = _config(_flags(tiny_model_dir, data_file, out, max_steps=4, max_length=128))
    with pytest.raises(FastChatLiteError, match="max_length"):
        train(changed, progress=False)
