"""The SFT recipe: config -> data -> model -> loop -> a standard HF model directory.

Reads top to bottom like nanoGPT's train.py and only wires the stages; each stage is a small
function in its own module (dataset, packing, model, loop, checkpoint, distributed) so it can
be tested alone.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.io import write_json
from train import distributed as D
from train.checkpoint import load_checkpoint, resolve_resume
from train.config import TrainConfig
from train.dataset import DataStats, load_samples
from train.loop import TrainingRun, run_loop
from train.metrics import TrainLogger, plot_loss_curve
from train.model import autocast_dtype, build_optimizer, prepare_model, save_final_model
from train.packing import BatchShape, DataPlan

SUMMARY_NAME = "train_summary.json"


def format_stats(stats: DataStats) -> str:
    return (
        f"data: {stats.records} records -> {stats.kept} samples kept; "
        f"{stats.truncated} truncated to max_length, {stats.no_trainable} dropped "
        f"(no trainable tokens), {stats.malformed} malformed, {stats.unreadable} unreadable; "
        f"{stats.tokens} tokens, {stats.trained_tokens} trained "
        f"({stats.trained_tokens / max(stats.tokens, 1):.1%})"
    )


def train(config: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) training; returns the summary also written to train_summary.json."""
    import torch

    from fastchat_lite.model_loading import load_tokenizer

    config.validate()
    if config.lora and config.fsdp:
        raise FastChatLiteError("lora with fsdp is not supported: use DDP (fsdp: false) for LoRA")
    ctx = D.init_distributed()
    try:
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        tokenizer = load_tokenizer(config.model_name_or_path)
        samples, stats = load_samples(
            config.data_path, tokenizer, config.template, config.max_length,
            num_workers=config.num_workers, tokenizer_dir=config.model_name_or_path,
            progress=progress and ctx.is_main,
        )  # fmt: skip
        if ctx.is_main:
            print(format_stats(stats))
        if not samples:
            raise FastChatLiteError(f"no trainable sample in {config.data_path}: {stats.examples}")
        run = _build_run(config, ctx, samples, tokenizer)
        _maybe_resume(run)
        status = run_loop(run, progress=progress)
        summary = {"status": status, "step": run.step, "total_steps": run.total_steps}
        summary["data"] = stats.summary()
        if status == "finished":
            save_final_model(run, tokenizer)
        if ctx.is_main:
            run.logger.close()
            plot_loss_curve(out)
            write_json(out / SUMMARY_NAME, summary)
            print(_final_message(summary, out))
        # Ranks tear the process group down together: one rank destroying it while another is
        # still finishing up can make gloo abort the other ("terminate called ...", SIGABRT).
        D.barrier(ctx)
        return summary
    finally:
        D.shutdown(ctx)


def _build_run(
    config: TrainConfig, ctx: D.DistContext, samples: list, tokenizer: Any
) -> TrainingRun:
    import torch

    shape = BatchShape(
        max_length=config.max_length,
        batch_size=config.per_device_train_batch_size,
        accumulation=config.gradient_accumulation_steps,
        world_size=ctx.world_size,
        packing=config.packing,
        group_by_length=config.group_by_length,
    )
    plan = DataPlan([len(s) for s in samples], shape, config.seed)
    total = plan.total_steps(config.num_train_epochs, config.max_steps)
    model, trainable = prepare_model(config, ctx)
    optimizer, scheduler = build_optimizer(model, config, total)
    amp = autocast_dtype(config, ctx.device)
    scaler = torch.amp.GradScaler(ctx.device.split(":")[0], enabled=amp == torch.float16)
    as_dict = dataclasses.asdict(config)
    logger = TrainLogger(Path(config.output_dir), config.report_to, as_dict, ctx.is_main)
    return TrainingRun(
        config=config, ctx=ctx, model=model, optimizer=optimizer, scheduler=scheduler,
        scaler=scaler, samples=samples, plan=plan, total_steps=total,
        pad_id=tokenizer.pad_token_id, amp_dtype=amp, logger=logger, trainable=trainable,
    )  # fmt: skip


# Options that change the data plan or the model: resuming across a change is refused.
_PLAN_KEYS = (
    "model_name_or_path", "data_path", "template", "max_length", "packing", "group_by_length",
    "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "lora",
)  # fmt: skip


def _maybe_resume(run: TrainingRun) -> None:
    path = resolve_resume(run.config.resume, run.config.output_dir)
    if path is None:
        run.logger.truncate_after(0)
        return
    saved = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))["config"]
    changed = [k for k in _PLAN_KEYS if saved.get(k) != getattr(run.config, k)]
    if changed:
        raise FastChatLiteError(
            f"{path} was written with different {', '.join(changed)}; resume from it with the "
            "same settings, or pass --resume never (or a new --output-dir) to start over"
        )
    state = load_checkpoint(run.ctx, path, run.model, run.optimizer, run.scheduler)
    run.step, run.epoch, run.in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
    run.logger.truncate_after(run.step)
    if run.ctx.is_main:
        print(f"resumed from {path} (step {run.step}/{run.total_steps}, epoch {run.epoch})")


def _final_message(summary: dict[str, Any], out: Path) -> str:
    if summary["status"] == "interrupted":
        return (
            f"stopped by SIGTERM at step {summary['step']}/{summary['total_steps']}: checkpoint "
            f"saved in {out / 'checkpoints'}; run the same command again to resume"
        )
    return f"done: {summary['step']} steps; model, tokenizer and loss_curve.png in {out}"
