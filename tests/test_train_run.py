"""Real (tiny, CPU) training runs: loss falls, outputs load, logs and counts are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastchat_lite import chat_template
from train.config import TrainConfig
from train.recipe import train
from train.synthetic import synthetic_conversations


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    """Synthetic conversations plus one record of each kind the trainer must count."""
    records = synthetic_conversations(48, seed=0, median_words=8, max_words=40)
    records.append({"id": "no_reply", "conversations": [{"from": "human", "value": "hi"}]})
    records.append({"id": "bad_role", "conversations": [{"from": "alien", "value": "x"}]})
    exchange = [{"from": "human", "value": "write"}, {"from": "gpt", "value": "data " * 150}]
    records.append({"id": "long", "conversations": exchange * 3})  # > max_length: truncated
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    lines = [json.dumps(r) for r in records] + ["{not json"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_config(model_dir: Path, data: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(
        model_name_or_path=str(model_dir), data_path=[str(data)], output_dir=str(out),
        max_length=256, max_steps=20, per_device_train_batch_size=2, learning_rate=3e-3,
        warmup_ratio=0.1, logging_steps=1, save_steps=5, save_total_limit=2, seed=1,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    summary = train(tiny_config(tiny_model_dir, data_file, out), progress=False)
    return out, summary


def test_twenty_step_run_finishes_and_loss_falls(trained):
    out, summary = trained
    assert summary["status"] == "finished" and summary["step"] == 20
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 21))
    first = sum(r["loss"] for r in log[:4]) / 4
    last = sum(r["loss"] for r in log[-4:]) / 4
    assert last < first - 0.5, (first, last)


def test_log_lines_carry_lr_throughput_and_trained_fraction(trained):
    out, _ = trained
    record = json.loads((out / "train_log.jsonl").read_text().splitlines()[5])
    assert set(record) == {"step", "loss", "lr", "tokens_per_s", "trained_token_fraction", "epoch"}
    assert record["tokens_per_s"] > 0 and 0 < record["trained_token_fraction"] < 1
    assert record["lr"] > 0 and record["epoch"] > 0
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_output_dir_loads_as_hf_model_with_our_chat_template(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = trained
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert (out / "model.safetensors").is_file()
    assert tokenizer.chat_template == chat_template("vicuna_v1.1")
    messages = [{"role": "user", "content": "hello"}]
    ids = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3


def test_only_the_newest_checkpoints_are_kept(trained):
    out, _ = trained
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == ["step-15", "step-20"]
    assert (out / "checkpoints" / "step-20" / "COMPLETE").is_file()


def test_summary_counts_truncated_dropped_and_bad_records(trained):
    out, summary = trained
    data = json.loads((out / "train_summary.json").read_text())["data"]
    assert data == summary["data"]
    assert data["records"] == 52 and data["kept"] == 49
    assert data["unreadable"] == 1 and data["malformed"] == 1 and data["no_trainable"] == 1
    assert data["truncated"] >= 1


def test_lora_run_saves_merged_model_and_adapter(tiny_model_dir, data_file, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    config = tiny_config(tiny_model_dir, data_file, out, lora=True, lora_r=4, max_steps=3,
                         learning_rate=1e-2, save_steps=0)  # fmt: skip
    assert train(config, progress=False)["status"] == "finished"
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not any("lora" in name for name in merged.state_dict())
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[name], base.state_dict()[name])


def test_unpacked_length_grouped_run_with_activation_checkpointing(
    tiny_model_dir, data_file, tmp_path
):
    out = tmp_path / "unpacked"
    config = tiny_config(tiny_model_dir, data_file, out, packing=False, group_by_length=True,
                         gradient_checkpointing=True, max_steps=3, save_steps=0)  # fmt: skip
    assert train(config, progress=False)["status"] == "finished"
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(r["loss"] == r["loss"] and r["loss"] > 0 for r in log)  # finite, not NaN
    assert not (out / "checkpoints").exists()
