"""One optimizer step, and the loop around it: logging, checkpoints, SIGTERM.

Loss normalisation, the thing packing must not change: every micro-batch returns the *sum* of
its per-token cross-entropies; the step divides by the number of trained tokens of the whole
step (all micro-batches, all ranks; known from the data plan without communication) and
multiplies by world_size because DDP/FSDP average gradients over ranks. The gradient is
therefore that of mean-over-trained-tokens, however the tokens were packed, padded or split.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastchat_lite.masking import IGNORE_INDEX
from train import distributed as D
from train.checkpoint import save_checkpoint
from train.collate import collate_packed, collate_rows
from train.config import TrainConfig
from train.dataset import Sample
from train.metrics import TrainLogger, Window
from train.packing import DataPlan, Step, rank_slots

# Test-only: SIGKILL this process after this optimizer step (the kill -9 resume drill).
KILL_AT_STEP_ENV = "FASTCHAT_LITE_TEST_KILL_AT_STEP"


def loss_sum(model: Any, batch: dict[str, Any], device: str, amp_dtype: Any) -> Any:
    """Sum of cross-entropy over the trained tokens of a collated micro-batch.

    Logits are only computed at trained positions (``logits_to_keep``): prompts and padding
    never go through the LM head.
    """
    import torch
    import torch.nn.functional as F

    input_ids = batch["input_ids"].to(device)
    targets = batch["targets"].to(device)
    trained = targets != IGNORE_INDEX
    with torch.autocast(device.split(":")[0], dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(
            input_ids=input_ids, position_ids=batch["position_ids"].to(device), use_cache=False,
            logits_to_keep=trained, **packed_attention_kwargs(batch, device),
        ).logits  # fmt: skip
    return F.cross_entropy(logits.float(), targets[trained], reduction="sum")


def packed_attention_kwargs(batch: dict[str, Any], device: str) -> dict[str, Any]:
    """flash-attn varlen's document boundaries for a packed batch (see train.attention)."""
    if "cu_seq_lens" not in batch:
        return {}
    cu_seq_lens = batch["cu_seq_lens"].to(device)
    return {
        "cu_seq_lens_q": cu_seq_lens, "cu_seq_lens_k": cu_seq_lens,
        "max_length_q": batch["max_length"], "max_length_k": batch["max_length"],
    }  # fmt: skip


@dataclass
class TrainingRun:
    """Everything the loop touches, built by train.recipe; options are read from ``config``."""

    config: TrainConfig
    ctx: D.DistContext
    model: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    samples: list[Sample]
    plan: DataPlan
    total_steps: int
    pad_id: int
    amp_dtype: Any
    logger: TrainLogger
    trainable: list[str]
    step: int = 0
    epoch: int = 0
    in_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _step_counts(run: TrainingRun, step: Step) -> tuple[int, int]:
    rows = [run.samples[i] for mb in step for row in mb for i in row]
    return sum(s.num_trained for s in rows), sum(len(s) for s in rows)


def train_step(run: TrainingRun, step: Step) -> tuple[float, int, int]:
    """Forward/backward this rank's micro-batches, then one optimizer update.

    Returns (this rank's loss sum, trained tokens of the step, real tokens of the step).
    """
    import torch

    trained, real = _step_counts(run, step)
    scale = run.ctx.world_size / max(trained, 1)
    slots = rank_slots(step, run.ctx.rank, run.plan.shape.accumulation)
    collate = collate_packed if run.plan.shape.packing else collate_rows
    local = 0.0
    for k, micro in enumerate(slots):
        rows = [[run.samples[i] for i in row] for row in micro]
        batch = collate(rows, run.pad_id)
        with D.grad_sync(run.model, enabled=k == len(slots) - 1):
            loss = loss_sum(run.model, batch, run.ctx.device, run.amp_dtype)
            run.scaler.scale(loss * scale).backward()
        local += float(loss.detach())
    run.scaler.unscale_(run.optimizer)
    if run.config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.max_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return local, trained, real


class StopRequest:
    """SIGTERM (spot preemption notice, torchrun shutdown) -> finish the step, save, exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopRequest:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def _checkpoint(run: TrainingRun) -> Path:
    state = {
        "step": run.step,
        "epoch": run.epoch,
        "step_in_epoch": run.in_epoch,
        "total_steps": run.total_steps,
        "config": dataclasses.asdict(run.config),
    }
    return save_checkpoint(
        run.ctx, run.model, run.optimizer, run.scheduler, run.trainable, state,
        run.config.output_dir, run.config.save_total_limit,
    )  # fmt: skip


def run_loop(run: TrainingRun, progress: bool = True) -> str:
    """Train from ``run.step`` to ``run.total_steps``; returns "finished" or "interrupted"."""
    from tqdm import tqdm

    kill_at = int(os.environ.get(KILL_AT_STEP_ENV, "0"))
    bar = tqdm(
        total=run.total_steps, initial=run.step, desc="train", unit="step",
        disable=not (progress and run.ctx.is_main), dynamic_ncols=True,
    )  # fmt: skip
    log_every, save_every = max(run.config.logging_steps, 1), run.config.save_steps
    window = Window()
    with StopRequest() as stop:
        while run.step < run.total_steps:
            steps = run.plan.epoch(run.epoch)
            if run.in_epoch >= len(steps):
                run.epoch, run.in_epoch = run.epoch + 1, 0
                continue
            started = time.perf_counter()
            local, trained, real = train_step(run, steps[run.in_epoch])
            loss_total, votes = D.all_reduce_sum(run.ctx, [local, float(stop.requested)])
            run.step, run.in_epoch = run.step + 1, run.in_epoch + 1
            window.add(loss_total, trained, real, time.perf_counter() - started)
            if run.step % log_every == 0 or run.step == run.total_steps:
                epoch = run.epoch + run.in_epoch / len(steps)
                record = window.record(run.step, run.scheduler.get_last_lr()[0], epoch)
                run.logger.log(record)
                run.history.append(record)
                bar.set_postfix(
                    loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                    tok_s=f"{record['tokens_per_s']:.0f}",
                    trained=f"{record['trained_token_fraction']:.2f}",
                )  # fmt: skip
                window = Window()
            bar.update()
            stopping = votes > 0 and run.step < run.total_steps
            if stopping or (save_every and run.step % save_every == 0):
                _checkpoint(run)
            if run.step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            if stopping:
                bar.close()
                return "interrupted"
    bar.close()
    return "finished"
