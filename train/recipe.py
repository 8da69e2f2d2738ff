"""The SFT recipe: config -> data -> model -> loop -> a standard HF model directory.

Reads top to bottom like nanoGPT's train.py; each stage is a small function in its own module
(dataset, packing, collate, loop, checkpoint, distributed) so it can be tested alone.
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
from train.packing import BatchShape, DataPlan

SUMMARY_NAME = "train_summary.json"


def prepare_model(config: TrainConfig, ctx: D.DistContext) -> tuple[Any, list[str]]:
    """Load the base model in fp32 (master weights), add LoRA / checkpointing, wrap for DDP/FSDP.

    Returns the (wrapped) model and the names of its trainable parameters.
    """
    from fastchat_lite.model_loading import load_model

    model = load_model(
        config.model_name_or_path, dtype="fp32", attn_implementation=config.attn_implementation
    )
    model.config.use_cache = False
    if config.gradient_checkpointing:
        enable_activation_checkpointing(model)
    if config.lora:
        model = _add_lora(model, config)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if not config.fsdp or not ctx.distributed:
        model.to(ctx.device)
    amp = autocast_dtype(config, ctx.device)
    model = D.wrap_model(model, ctx, config.fsdp if ctx.distributed else "", amp)
    if config.fsdp and ctx.distributed:
        model.to(ctx.device)
    model.train()
    return model, trainable


def enable_activation_checkpointing(model: Any) -> None:
    """Recompute each decoder layer in backward (non-reentrant: works with LoRA and FSDP)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _add_lora(model: Any, config: TrainConfig) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise FastChatLiteError(
            "lora: true needs peft: pip install 'fastchat-lite[train]'"
        ) from None
    targets = config.lora_target_modules
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets[0] if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def build_optimizer(model: Any, config: TrainConfig, total_steps: int) -> tuple[Any, Any]:
    """AdamW over trainable parameters (no decay on biases/norms) + warmup then the schedule."""
    import torch
    from transformers import get_scheduler

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
    )
    warmup = round(config.warmup_ratio * total_steps)
    scheduler = get_scheduler(
        config.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps
    )
    return optimizer, scheduler


def autocast_dtype(config: TrainConfig, device: str) -> Any:
    """bf16/fp16 autocast on GPU (fp32 master weights), nothing on CPU unless asked."""
    import torch

    from fastchat_lite.model_loading import resolve_dtype

    dtype = resolve_dtype(config.dtype, cuda=device.startswith("cuda"))
    return None if dtype == torch.float32 else dtype


def format_stats(stats: DataStats) -> str:
    return (
        f"data: {stats.records} records -> {stats.kept} samples kept; "
        f"{stats.truncated} truncated to max_length, {stats.no_trainable} dropped "
        f"(no trainable tokens), {stats.malformed} malformed, {stats.unreadable} unreadable; "
        f"{stats.tokens} tokens, {stats.trained_tokens} trained "
        f"({stats.trained_tokens / max(stats.tokens, 1):.1%})"
    )


def save_final_model(run: TrainingRun, config: TrainConfig, tokenizer: Any) -> Path:
    """Write the trained model + tokenizer (with our chat_template) into output_dir."""
    from fastchat_lite.jinja_export import chat_template

    out = Path(config.output_dir)
    save_dtype = run.amp_dtype
    if config.fsdp and run.ctx.distributed:
        weights = D.full_state_dict(run.model)  # every rank takes part in the gather
        if run.ctx.is_main:
            _save_from_state_dict(run.model, weights, out, save_dtype)
    elif run.ctx.is_main:
        model = D.unwrap(run.model)
        if config.lora:
            model.save_pretrained(out / "adapter")
            model = model.merge_and_unload()
        if save_dtype is not None:
            model = model.to(save_dtype)
        model.config.use_cache = True
        model.save_pretrained(out)
    if run.ctx.is_main:
        tokenizer.chat_template = chat_template(config.template)
        tokenizer.save_pretrained(out)
    D.barrier(run.ctx)
    return out


def _save_from_state_dict(model: Any, weights: dict, out: Path, dtype: Any) -> None:
    """Rebuild an unsharded model on rank 0 from a gathered state dict and save it."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(model.config)
    fresh.load_state_dict(weights, assign=True, strict=False)
    fresh.tie_weights()
    if dtype is not None:
        fresh = fresh.to(dtype)
    fresh.config.use_cache = True
    fresh.save_pretrained(out)


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
        _maybe_resume(run, config)
        status = run_loop(run, progress=progress)
        summary = {"status": status, "step": run.step, "total_steps": run.total_steps}
        summary["data"] = stats.summary()
        if status == "finished":
            save_final_model(run, config, tokenizer)
        if ctx.is_main:
            run.logger.close()
            plot_loss_curve(out)
            write_json(out / SUMMARY_NAME, summary)
            print(_final_message(summary, out))
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
        ctx=ctx, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        samples=samples, plan=plan, total_steps=total, pad_id=tokenizer.pad_token_id,
        amp_dtype=amp, max_grad_norm=config.max_grad_norm, logger=logger,
        output_dir=Path(config.output_dir), trainable=trainable, save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, logging_steps=max(config.logging_steps, 1),
        config=as_dict,
    )  # fmt: skip


# Options that change the data plan or the model: resuming across a change is refused.
_PLAN_KEYS = (
    "model_name_or_path", "data_path", "template", "max_length", "packing", "group_by_length",
    "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "lora",
)  # fmt: skip


def _maybe_resume(run: TrainingRun, config: TrainConfig) -> None:
    path = resolve_resume(config.resume, config.output_dir)
    if path is None:
        run.logger.truncate_after(0)
        return
    saved = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))["config"]
    changed = [k for k in _PLAN_KEYS if saved.get(k) != run.config.get(k)]
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
