"""``data generate --sharegpt`` -> ``train``: the generated file trains as it is, no convert."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("fastapi")

from test_data_generate import Teacher, fresh_tasks, generate, serving


def test_generated_sharegpt_file_trains_the_tiny_model(tiny_model_dir, tmp_path):
    from train.config import TrainConfig
    from train.recipe import train

    data = tmp_path / "generated.jsonl"
    with serving(Teacher(fallback=fresh_tasks)) as url:
        assert generate(url, data, "--num", "8", "--sharegpt", "--seed-tasks", "alpaca") == 0
    records = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(records) == 8 and records[0]["conversations"][0]["from"] == "human"

    out = tmp_path / "model"
    config = TrainConfig(
        model_name_or_path=str(tiny_model_dir), data_path=[str(data)], output_dir=str(out),
        max_length=128, max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3,
        logging_steps=1, save_steps=100, seed=0,
    )  # fmt: skip
    summary = train(config, progress=False)
    assert summary["status"] == "finished" and summary["step"] == 3
    assert (out / "model.safetensors").is_file()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(record["trained_token_fraction"] > 0 for record in log)
