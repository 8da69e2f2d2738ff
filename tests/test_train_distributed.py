"""torchrun with 2 CPU processes (gloo): FSDP2 and DDP train the same weights as one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from train.config import TrainConfig
from train.recipe import train
from train.synthetic import synthetic_conversations

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    records = synthetic_conversations(24, seed=11, median_words=8, max_words=40)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _options(model_dir: Path, data: Path, out: Path) -> dict:
    return dict(
        model_name_or_path=str(model_dir), data_path=[str(data)], output_dir=str(out),
        max_length=256, max_steps=6, per_device_train_batch_size=2, learning_rate=3e-3,
        logging_steps=1, save_steps=3, save_total_limit=0, seed=4,
    )  # fmt: skip


def _torchrun(options: dict, fsdp: bool) -> str:
    flags = []
    for key, value in options.items():
        flags += [f"--{key.replace('_', '-')}", *(value if isinstance(value, list) else [value])]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "train", "--no-progress", *map(str, flags), "--fsdp", str(fsdp).lower(),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _assert_same_weights(a: Path, b: Path, atol: float) -> None:
    from safetensors.torch import load_file

    want, got = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert want.keys() == got.keys()
    for name in want:
        assert (want[name] - got[name]).abs().max().item() < atol, name


@pytest.fixture(scope="module")
def single_process(tiny_model_dir, data_file, tmp_path_factory) -> Path:
    """Reference: 1 process, 2 micro-batches per step == 2 processes x 1 micro-batch."""
    out = tmp_path_factory.mktemp("single") / "out"
    options = _options(tiny_model_dir, data_file, out)
    train(TrainConfig(**options, gradient_accumulation_steps=2), progress=False)
    return out


@pytest.mark.slow
def test_fsdp_two_processes_match_one_process_and_resume(
    tiny_model_dir, data_file, single_process, tmp_path
):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "fsdp"
    _torchrun(_options(tiny_model_dir, data_file, out), fsdp=True)
    assert AutoModelForCausalLM.from_pretrained(out).config.architectures == ["LlamaForCausalLM"]
    _assert_same_weights(single_process, out, atol=1e-5)
    # Resume under FSDP from the sharded run's step-3 checkpoint: same final weights again.
    first = out.with_name("fsdp-first")
    shutil.copytree(out, first)
    shutil.rmtree(out / "checkpoints" / "step-6")
    (out / "model.safetensors").unlink()
    assert "resumed from" in _torchrun(_options(tiny_model_dir, data_file, out), fsdp=True)
    _assert_same_weights(first, out, atol=1e-6)


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tiny_model_dir, data_file, single_process, tmp_path):
    out = tmp_path / "ddp"
    _torchrun(_options(tiny_model_dir, data_file, out), fsdp=False)
    _assert_same_weights(single_process, out, atol=1e-5)
