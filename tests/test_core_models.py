from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from fastchat_lite import chat_template
from fastchat_lite.config import add_dataclass_arguments, build_config
from fastchat_lite.errors import FastChatLiteError, MissingExtraError
from fastchat_lite.jinja_export import template_name_from_chat_template
from fastchat_lite.model_loading import load_model, load_tokenizer, resolve_attention


def test_tiny_model_round_trips_through_from_pretrained_with_our_chat_template(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    model = load_model(tiny_model_dir)
    assert template_name_from_chat_template(tokenizer.chat_template) == "vicuna_v1.1"
    assert tokenizer.chat_template == chat_template("vicuna_v1.1")
    assert model.config.model_type == "llama"
    assert model.config._attn_implementation == "sdpa"
    ids = tokenizer("hello", return_tensors="pt")["input_ids"]
    assert model(ids).logits.shape[-1] == len(tokenizer)


def test_flash_attention_without_flash_attn_says_which_extra_to_install(monkeypatch):
    monkeypatch.setattr("fastchat_lite.model_loading.flash_attn_available", lambda: False)
    with pytest.raises(MissingExtraError, match=r"fastchat-lite\[flash\]"):
        resolve_attention("flash_attention_2", cuda=True)
    assert resolve_attention("auto", cuda=True) == "sdpa"
    assert resolve_attention("auto", cuda=False) == "sdpa"


def test_loading_a_directory_without_config_names_the_problem(tmp_path):
    with pytest.raises(FastChatLiteError, match=r"no config\.json"):
        load_model(tmp_path)


@dataclass
class _Demo:
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    steps: int = field(default=10, metadata={"help": "steps"})
    packing: bool = field(default=False, metadata={"help": "pack"})
    data: list[str] = field(default_factory=list, metadata={"help": "files"})


def test_config_precedence_is_defaults_then_yaml_then_flags(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lr: 0.5\nsteps: 3\ndata: [a.jsonl]\n")
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, _Demo)
    args = parser.parse_args(["--steps", "7", "--packing"])
    config = build_config(_Demo, args, str(yaml_file))
    assert (config.lr, config.steps, config.packing, config.data) == (0.5, 7, True, ["a.jsonl"])


def test_unknown_yaml_option_is_rejected_by_name(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("learning_rat: 0.5\n")
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, _Demo)
    with pytest.raises(FastChatLiteError, match="learning_rat"):
        build_config(_Demo, parser.parse_args([]), str(yaml_file))
