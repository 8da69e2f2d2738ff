"""The shell scripts the sky YAMLs run, run here with fake SKYPILOT_* variables and stub tools.

A stub ``torchrun`` (or ``fastchat-lite``, or ``python`` for the setup script) on PATH writes
its argv as JSON and exits, so these tests prove the exact command each node of a 2 x 8 GPU
cluster would start, without a GPU, a cluster or any network traffic (the IPs are never
contacted). Environment values come from sky/train.yaml itself, so YAML and script cannot drift.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SKY = ROOT / "sky"
STUB = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps({{"tool": os.path.basename(sys.argv[0]), "argv": sys.argv[1:]}}) + "\\n")
"""


def _stub_bin(tmp_path: Path, *tools: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        path = bin_dir / tool
        path.write_text(STUB)
        path.chmod(0o755)
    return bin_dir


def _yaml_envs(name: str) -> dict[str, str]:
    envs = yaml.safe_load((SKY / name).read_text())["envs"]
    return {k: str(v) for k, v in envs.items() if v is not None}


def _run(
    script: list[str], tmp_path: Path, env: dict[str, str], *tools: str
) -> tuple[int, str, list]:
    """Run ``bash sky/<script[0]> <script[1:]>`` with stubs for ``tools``; (rc, stderr, calls)."""
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    full_env = {
        "PATH": f"{_stub_bin(tmp_path, *tools)}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "STUB_LOG": str(log),
        **env,
    }
    proc = subprocess.run(
        ["bash", str(SKY / script[0]), *script[1:]],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc.returncode, proc.stderr, calls


def _train_env(tmp_path: Path, nodes: int, rank: int, **overrides: str) -> dict[str, str]:
    model = tmp_path / "llama-7b"
    model.mkdir(exist_ok=True)
    return {
        **_yaml_envs("train.yaml"),
        "CKPT_BUCKET": "my-ckpts",
        "MODEL_PATH": str(model),
        "SKYPILOT_NUM_NODES": str(nodes),
        "SKYPILOT_NODE_RANK": str(rank),
        "SKYPILOT_NODE_IPS": "\n".join(f"10.0.0.{i + 1}" for i in range(nodes)),
        "SKYPILOT_NUM_GPUS_PER_NODE": "8",
        **overrides,
    }


def _expected_torchrun(nodes: int, rank: int, model: str, grad_accum: int) -> list[str]:
    return [
        "--nnodes", str(nodes), "--node_rank", str(rank), "--master_addr", "10.0.0.1",
        "--master_port", "29500", "--nproc_per_node", "8",
        "-m", "fastchat_lite.cli", "train",
        "--model-name-or-path", model,
        "--data-path", "/data/train.jsonl",
        "--output-dir", "/checkpoints/vicuna-7b",
        "--resume", "auto",
        "--template", "vicuna_v1.1",
        "--max-length", "2048",
        "--num-train-epochs", "3",
        "--per-device-train-batch-size", "2",
        "--gradient-accumulation-steps", str(grad_accum),
        "--learning-rate", "2e-5",
        "--weight-decay", "0.0",
        "--warmup-ratio", "0.03",
        "--lr-scheduler-type", "cosine",
        "--fsdp", "full_shard",
        "--gradient-checkpointing", "true",
        "--attn-implementation", "auto",
        "--save-steps", "100",
        "--save-total-limit", "2",
        "--logging-steps", "1",
    ]  # fmt: skip


@pytest.mark.parametrize("rank", [0, 1])
def test_each_of_two_nodes_gets_its_rank_and_the_head_as_master(tmp_path: Path, rank: int) -> None:
    env = _train_env(tmp_path, nodes=2, rank=rank)
    code, stderr, calls = _run(["launch_train.sh"], tmp_path, env, "torchrun")
    assert code == 0, stderr
    # 128 = 2 per device x 4 accumulation x 2 nodes x 8 GPUs; resume from the bucket mount.
    assert calls == [
        {"tool": "torchrun", "argv": _expected_torchrun(2, rank, env["MODEL_PATH"], 4)}
    ]


def test_one_node_accumulates_twice_as_many_steps_for_the_same_global_batch(
    tmp_path: Path,
) -> None:
    env = _train_env(tmp_path, nodes=1, rank=0)
    code, stderr, calls = _run(["launch_train.sh"], tmp_path, env, "torchrun")
    assert code == 0, stderr
    assert calls[0]["argv"] == _expected_torchrun(1, 0, env["MODEL_PATH"], 8)


def test_a_batch_that_does_not_divide_is_refused_before_torchrun(tmp_path: Path) -> None:
    env = _train_env(tmp_path, nodes=2, rank=0, PER_DEVICE_BATCH_SIZE="3")
    code, stderr, calls = _run(["launch_train.sh"], tmp_path, env, "torchrun")
    assert code == 2 and calls == []
    assert "GLOBAL_BATCH_SIZE=128 is not a multiple" in stderr


def test_a_missing_skypilot_variable_is_named(tmp_path: Path) -> None:
    env = _train_env(tmp_path, nodes=2, rank=0)
    del env["SKYPILOT_NODE_IPS"]
    code, stderr, calls = _run(["launch_train.sh"], tmp_path, env, "torchrun")
    assert code == 2 and calls == [] and "$SKYPILOT_NODE_IPS is not set" in stderr


def test_output_off_the_bucket_warns_that_preemption_loses_it(tmp_path: Path) -> None:
    env = _train_env(tmp_path, nodes=1, rank=0, OUTPUT_DIR="/tmp/out")
    code, stderr, calls = _run(["launch_train.sh"], tmp_path, env, "torchrun")
    assert code == 0 and "not under the bucket mount /checkpoints" in stderr
    argv = calls[0]["argv"]
    assert argv[argv.index("--output-dir") + 1] == "/tmp/out"


def test_a_hub_model_id_is_downloaded_once_per_node_to_local_disk(tmp_path: Path) -> None:
    env = _train_env(tmp_path, nodes=1, rank=0, MODEL_PATH="meta-llama/Llama-2-7b-hf")
    env["TRAIN_EXTRA_ARGS"] = "--max-steps 10 --lora true"
    code, stderr, calls = _run(["launch_train.sh"], tmp_path, env, "torchrun", "python")
    assert code == 0, stderr
    local = str(tmp_path / "home" / "models" / "meta-llama--Llama-2-7b-hf")
    assert calls[0] == {"tool": "python", "argv": ["-", "meta-llama/Llama-2-7b-hf", local]}
    argv = calls[1]["argv"]
    assert argv[argv.index("--model-name-or-path") + 1] == local
    assert argv[-4:] == ["--max-steps", "10", "--lora", "true"]


def test_every_env_the_run_script_reads_is_declared_in_the_yaml() -> None:
    script = (SKY / "launch_train.sh").read_text()
    read = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", script))
    read |= set(re.findall(r"for name in ([A-Z_ \\\n]+); do", script)[0].split()) - {"\\"}
    provided = {"HOME", "HF_TOKEN", "CKPT_MOUNT", "MODEL_CACHE"}  # node / secrets / test knobs
    undeclared = {v for v in read if not v.startswith("SKYPILOT_")} - provided
    assert undeclared <= set(yaml.safe_load((SKY / "train.yaml").read_text())["envs"])


def test_setup_installs_cuda_torch_then_flash_attn_then_the_project(tmp_path: Path) -> None:
    env = {"TORCH_VERSION": _yaml_envs("train.yaml")["TORCH_VERSION"]}
    code, stderr, calls = _run(["setup_node.sh", "train,flash"], tmp_path, env, "python")
    assert code == 0, stderr
    installs = [c["argv"][3:] for c in calls if c["argv"][:3] == ["-m", "pip", "install"]]
    quiet = ["--progress-bar", "off"]
    assert installs == [
        [*quiet, "--upgrade", "pip"],
        [*quiet, "torch==2.13.0"],  # PyPI's default index: the CUDA wheel on Linux x86_64
        [*quiet, "packaging", "ninja", "wheel"],
        [*quiet, "flash-attn>=2.6", "--no-build-isolation"],  # its build imports that torch
        [*quiet, "-e", ".[train,flash]"],  # finds both satisfied, replaces neither
    ]
    assert calls[-1]["argv"] == ["-"]  # then the check that torch is a CUDA build


def test_serve_setup_skips_flash_attn(tmp_path: Path) -> None:
    code, stderr, calls = _run(["setup_node.sh", "serve"], tmp_path, {}, "python")
    assert code == 0, stderr
    assert not any("flash-attn>=2.6" in c["argv"] for c in calls)
    assert calls[-2]["argv"][-2:] == ["-e", ".[serve]"]


def test_serve_copies_only_the_model_files_and_serves_them_on_all_interfaces(
    tmp_path: Path,
) -> None:
    model = tmp_path / "bucket" / "vicuna-7b"
    (model / "checkpoints" / "step-100").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "checkpoints" / "step-100" / "optimizer.pt").write_bytes(b"huge")
    env = {**_yaml_envs("serve.yaml"), "MODEL_DIR": str(model)}
    code, stderr, calls = _run(["launch_serve.sh"], tmp_path, env, "fastchat-lite")
    assert code == 0, stderr
    local = tmp_path / "home" / "models" / "vicuna-7b"
    assert sorted(p.name for p in local.iterdir()) == ["config.json", "model.safetensors"]
    assert calls == [
        {
            "tool": "fastchat-lite",
            "argv": ["serve", "local", "--model", str(local), "--model-name", "vicuna-7b",
                     "--device", "cuda", "--host", "0.0.0.0", "--port", "8000", "--no-web"],
        }
    ]  # fmt: skip


def test_serve_with_an_api_key_requires_it(tmp_path: Path) -> None:
    model = tmp_path / "vicuna-7b"
    model.mkdir()
    (model / "config.json").write_text("{}")
    env = {**_yaml_envs("serve.yaml"), "MODEL_DIR": str(model), "API_KEY": "sk-test"}
    code, stderr, calls = _run(["launch_serve.sh"], tmp_path, env, "fastchat-lite")
    assert code == 0, stderr
    assert calls[0]["argv"][-2:] == ["--api-key", "sk-test"]


def test_serve_without_a_finished_model_says_so(tmp_path: Path) -> None:
    env = {**_yaml_envs("serve.yaml"), "MODEL_DIR": str(tmp_path / "empty")}
    code, stderr, calls = _run(["launch_serve.sh"], tmp_path, env, "fastchat-lite")
    assert code == 2 and calls == [] and "has no config.json" in stderr


def test_scripts_are_valid_bash() -> None:
    for script in sorted(SKY.glob("*.sh")):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script.name}: {proc.stderr}"
    assert os.access(SKY / "launch_train.sh", os.R_OK)


def _parse_with_the_real_cli(module: str, argv: list[str]) -> object:
    """Parse ``argv`` (starting at the subcommand) with the project's own parser for it."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser(prog="fastchat-lite")
    importlib.import_module(module).add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_the_trainer_accepts_every_flag_the_launch_script_passes(tmp_path: Path) -> None:
    from fastchat_lite.config import build_config
    from train.config import TrainConfig

    env = _train_env(tmp_path, nodes=2, rank=1, DATA_PATH="/data/a.jsonl /data/b.jsonl")
    code, stderr, calls = _run(["launch_train.sh"], tmp_path, env, "torchrun")
    assert code == 0, stderr
    argv = calls[0]["argv"]
    config = build_config(TrainConfig, _parse_with_the_real_cli("train.cli", argv[7 + 5 :]))
    assert argv[10:13] == ["-m", "fastchat_lite.cli", "train"]
    assert config.data_path == ["/data/a.jsonl", "/data/b.jsonl"]
    assert config.output_dir == "/checkpoints/vicuna-7b" and config.resume == "auto"
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (2, 4)
    assert (config.learning_rate, config.num_train_epochs, config.max_length) == (2e-5, 3, 2048)
    assert (config.warmup_ratio, config.lr_scheduler_type) == (0.03, "cosine")
    assert config.fsdp == "full_shard" and config.gradient_checkpointing is True
    config.validate()


def test_the_server_accepts_every_flag_the_serve_script_passes(tmp_path: Path) -> None:
    from fastchat_lite.config import build_config
    from serve.config import LocalConfig

    model = tmp_path / "vicuna-7b"
    model.mkdir()
    (model / "config.json").write_text("{}")
    env = {**_yaml_envs("serve.yaml"), "MODEL_DIR": str(model), "API_KEY": "sk-test"}
    code, stderr, calls = _run(["launch_serve.sh"], tmp_path, env, "fastchat-lite")
    assert code == 0, stderr
    args = _parse_with_the_real_cli("serve.cli", calls[0]["argv"])
    assert args.serve_command == "local" and args.port == 8000 and args.host == "0.0.0.0"
    config = build_config(LocalConfig, args)
    assert config.worker.model_name == "vicuna-7b" and config.worker.device == "cuda"
    assert config.no_web and config.api.api_key == ["sk-test"]
