"""Checkpoints that survive being killed at any instant, and finding the one to resume from.

Layout: ``output_dir/checkpoints/step-<N>/`` with ``trainable.safetensors`` (every trainable
parameter, full precision, unsharded), ``optimizer.pt``, ``scheduler.pt``, ``rng.pt`` (python
and torch RNG of every rank), ``trainer_state.json`` (step, epoch, step in epoch, config) and a
``COMPLETE`` marker. Rank 0 writes everything into ``.step-<N>.tmp``, renames it into place and
only then writes the marker, so a ``step-<N>`` without the marker (a rename cut short on a
bucket mount, a manual copy) is never resumed from.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.io import atomic_write, write_json
from train import distributed as D

MARKER = "COMPLETE"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoints_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def complete_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first."""
    root = checkpoints_root(output_dir)
    found = []
    if root.is_dir():
        for child in root.iterdir():
            match = _STEP_DIR.match(child.name)
            if match and (child / MARKER).is_file():
                found.append((int(match.group(1)), child))
    return sorted(found)


def resolve_resume(resume: str, output_dir: str | Path) -> Path | None:
    """``auto`` -> latest complete checkpoint (or None), ``never`` -> None, else that path."""
    if resume == "never":
        return None
    if resume == "auto":
        found = complete_checkpoints(output_dir)
        return found[-1][1] if found else None
    path = Path(resume)
    if not (path / MARKER).is_file():
        raise FastChatLiteError(f"resume={resume}: not a complete checkpoint (no {MARKER} file)")
    return path


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    ctx: D.DistContext,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    trainable: list[str],
    state: dict[str, Any],
    output_dir: str | Path,
    keep: int,
) -> Path:
    """Write a checkpoint for ``state["step"]`` (every rank must call this) and prune old ones."""
    import torch
    from safetensors.torch import save_file

    weights = D.full_state_dict(model)
    optim = D.optimizer_state(model, optimizer)
    rng = D.gather_objects(ctx, _rng_state())
    final = checkpoints_root(output_dir) / f"step-{state['step']}"
    if ctx.is_main:
        tmp = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tensors = {k: weights[k].contiguous() for k in trainable}
        save_file(tensors, tmp / "trainable.safetensors")
        torch.save(optim, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng, tmp / "rng.pt")
        write_json(tmp / "trainer_state.json", state)
        if final.exists():  # re-saving the same step (resumed then preempted again)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        # The marker goes in last: on a bucket mount (goofys) a directory rename copies file
        # by file, so a marker written before the rename could arrive before the weights.
        with atomic_write(final / MARKER) as handle:
            handle.write("ok\n")
        prune(output_dir, keep)
    D.barrier(ctx)
    return final


def prune(output_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints (0 keeps all)."""
    found = complete_checkpoints(output_dir)
    doomed = [path for _, path in found[:-keep]] if keep > 0 else []
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def load_checkpoint(
    ctx: D.DistContext, path: Path, model: Any, optimizer: Any, scheduler: Any
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and this rank's RNG; returns trainer_state."""
    import torch
    from safetensors.torch import load_file

    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    weights = load_file(path / "trainable.safetensors") if ctx.is_main else {}
    D.load_full_state_dict(model, ctx, weights)
    optim = torch.load(path / "optimizer.pt", weights_only=False) if ctx.is_main else {}
    D.load_optimizer_state(model, optimizer, ctx, optim)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng = torch.load(path / "rng.pt", weights_only=False)
    if len(rng) != ctx.world_size:
        print(f"note: {path} was saved by {len(rng)} processes; RNG streams are re-seeded")
    else:
        _set_rng_state(rng[ctx.rank])
    return state
