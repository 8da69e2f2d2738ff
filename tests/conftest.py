"""Shared fixtures: tiny tokenizers and models built locally, never downloaded or committed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# ../shared/data beside the checkout (CI clones main with shared/ next to it).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Under CI, `make install` has installed every dependency a test can skip for (chromium, the
# SkyPilot venv, the dev extras) and shared/ sits beside the clone: a skip there means a broken
# install, so it fails instead of hiding. Tests whose skip reflects the machine, not the install,
# carry @pytest.mark.skip_ok_in_ci.
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport, allowed: bool) -> None:
    if IN_CI and report.skipped and not allowed and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where `make install` should provide it: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result(), item.get_closest_marker("skip_ok_in_ci") is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield  # a module-level importorskip skips the whole file at collection
    _fail_skip_in_ci(outcome.get_result(), False)


@pytest.fixture(scope="session")
def identity_conversations() -> list[dict]:
    path = SHARED_DATA / "identity_conversations.json"
    if not path.is_file():
        pytest.skip(f"shared reference data not found at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


SAMPLE_TEXTS = [
    "Hello! How can I help you today?",
    "Write a Python function that adds two numbers.",
    "def add(a, b):\n    return a + b",
    "你好，世界！今天天气很好。",
    "Emoji test 🎉🚀 works fine 👍",
    "USER: ASSISTANT: </s> <s> <|im_start|> [INST] [/INST] ### Instruction:",
    "The quick brown fox jumps over the lazy dog. 1234567890",
]


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer trained locally and saved with save_pretrained."""
    from fastchat_lite.tiny import train_tokenizer

    out = tmp_path_factory.mktemp("tiny-tokenizer")
    train_tokenizer(SAMPLE_TEXTS * 20, vocab_size=600).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def _build_tiny_model(out: Path, context_length: int) -> Path:
    from fastchat_lite.tiny import TinyModelConfig, build_tiny_model

    config = TinyModelConfig(
        vocab_size=600,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
    )
    return build_tiny_model(out, SAMPLE_TEXTS * 20, config)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init Llama (2 layers, hidden 64) with its tokenizer, loadable by from_pretrained."""
    return _build_tiny_model(tmp_path_factory.mktemp("tiny-model"), 512)


@pytest.fixture(scope="session")
def long_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny Llama with a 2048-token context, for generations that must outlast setup."""
    return _build_tiny_model(tmp_path_factory.mktemp("tiny-model-2k"), 2048)
