"""``fastchat-lite train``: flags generated from TrainConfig; YAML < flags precedence.

Single process: ``fastchat-lite train --config run.yaml``. Several GPUs or nodes:
``torchrun --nproc_per_node 8 -m fastchat_lite train --config run.yaml``.
"""

from __future__ import annotations

import argparse

from fastchat_lite.config import add_config_arguments, build_config

EXAMPLE = """examples:
  fastchat-lite train --config fastchat_lite/configs/tiny_cpu.yaml
  fastchat-lite train --config run.yaml --learning-rate 1e-5 --max-steps 100
  torchrun --nproc_per_node 8 -m fastchat_lite train --config run.yaml --fsdp true

Options come from the defaults, then the YAML file, then these flags (last wins).
SIGTERM saves a checkpoint and exits 0; rerunning the same command resumes."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from train.config import TrainConfig

    parser = sub.add_parser(
        "train",
        help="supervised fine-tuning of a local HF causal LM on ShareGPT conversations",
        description="Fine-tune on the assistant replies only (exact loss mask), with packing, "
        "checkpoint/resume, DDP/FSDP under torchrun.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (logs still written)"
    )
    add_config_arguments(parser, TrainConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from train.config import TrainConfig
    from train.recipe import train

    config = build_config(TrainConfig, args, args.config)
    summary = train(config, progress=not args.no_progress)
    return 0 if summary["status"] in ("finished", "interrupted") else 1
