"""TrainConfig is the one source of truth: --help, YAML and flags all come from it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from fastchat_lite.config import build_config, load_yaml
from fastchat_lite.errors import FastChatLiteError
from train.cli import add_parser
from train.config import TrainConfig, parse_fsdp

REPO = Path(__file__).resolve().parents[1]
REQUIRED_FIELDS = [
    "model_name_or_path",
    "data_path",
    "output_dir",
    "template",
    "max_length",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "weight_decay",
    "warmup_ratio",
    "lr_scheduler_type",
    "packing",
    "group_by_length",
    "gradient_checkpointing",
    "attn_implementation",
    "dtype",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "seed",
    "lora",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "report_to",
    "fsdp",
    "deepspeed",
    "resume",
    "num_workers",
]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


def _help_text() -> str:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_parser(sub)
    return sub.choices["train"].format_help()


def test_help_lists_every_config_field():
    text = _help_text()
    for f in dataclasses.fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in text, f.name
    assert "--config" in text


def test_documented_field_names_and_defaults_exist():
    defaults = TrainConfig()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(REQUIRED_FIELDS) <= names
    assert (defaults.template, defaults.max_length, defaults.max_steps) == ("vicuna_v1.1", 2048, -1)
    assert (defaults.learning_rate, defaults.warmup_ratio) == (2e-5, 0.03)
    assert (defaults.lr_scheduler_type, defaults.attn_implementation) == ("cosine", "auto")
    assert (defaults.dtype, defaults.resume, defaults.report_to) == ("auto", "auto", "none")


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(
        "model_name_or_path: m\ndata_path: one.jsonl\noutput_dir: o\n"
        "learning_rate: 1.0e-3\nmax_steps: 5\npacking: false\n",
        encoding="utf-8",
    )
    args = _parse(["--config", str(yaml_file), "--learning-rate", "5e-4", "--lora"])
    config = build_config(TrainConfig, args, args.config)
    assert config.learning_rate == 5e-4  # flag beats YAML
    assert config.max_steps == 5 and config.packing is False  # YAML beats default
    assert config.data_path == ["one.jsonl"] and config.lora is True
    assert config.seed == TrainConfig().seed  # default


def test_unknown_yaml_key_is_an_error_naming_it(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("learning_rat: 1\n", encoding="utf-8")
    with pytest.raises(FastChatLiteError, match="learning_rat"):
        build_config(TrainConfig, _parse([]), str(yaml_file))


def test_shipped_example_configs_are_valid():
    configs = sorted((REPO / "fastchat_lite" / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        TrainConfig(**load_yaml(path))


@pytest.mark.parametrize(
    "value,want",
    [(False, ""), (True, "full_shard"), ("true", "full_shard"), ("false", ""),
     ("full_shard auto_wrap", "full_shard"), ("shard_grad_op", "shard_grad_op")],
)  # fmt: skip
def test_fsdp_accepts_bool_or_hf_style_string(value, want):
    assert parse_fsdp(value) == want


def test_deepspeed_and_missing_paths_are_clear_errors():
    with pytest.raises(FastChatLiteError, match="data_path"):
        TrainConfig(model_name_or_path="m", output_dir="o").validate()
    config = TrainConfig(
        model_name_or_path="m", output_dir="o", data_path=["d"], deepspeed="z.json"
    )
    with pytest.raises(FastChatLiteError, match="fsdp"):
        config.validate()


@pytest.mark.skip_ok_in_ci  # skipped only where flash-attn is installed (a GPU machine)
def test_flash_attention_without_flash_attn_exits_2_with_the_extra_to_install(
    tiny_model_dir, tmp_path, capsys
):
    from fastchat_lite.model_loading import flash_attn_available
    from train.__main__ import main

    if flash_attn_available():
        pytest.skip("flash-attn is installed here")
    data = tmp_path / "d.jsonl"
    data.write_text('{"conversations": [{"from": "human", "value": "hi"}, '
                    '{"from": "gpt", "value": "hello"}]}\n')  # fmt: skip
    argv = ["--model-name-or-path", str(tiny_model_dir), "--data-path", str(data),
            "--output-dir", str(tmp_path / "o"), "--attn-implementation", "flash_attention_2",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "fastchat-lite[flash]" in capsys.readouterr().err


def test_fastchat_lite_console_script_has_the_train_command():
    from fastchat_lite.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert "--learning-rate" in sub.choices["train"].format_help()


def test_training_doc_lists_every_config_field():
    text = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f"`{f.name}`" not in text]
    assert not missing, f"docs/training.md config reference lacks {missing}"
