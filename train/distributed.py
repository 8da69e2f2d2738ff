"""Process-group setup, DDP/FSDP wrapping and the few collectives the loop needs.

Launched plainly, everything here is a no-op on one process. Under ``torchrun`` (env
``WORLD_SIZE`` > 1) it joins the process group (NCCL on GPU, gloo on CPU) and wraps the model
in DDP, or in FSDP2 (``fully_shard``) on every decoder layer and then the root when ``fsdp`` is
set. Full state dicts are gathered to rank 0 (CPU) for checkpoints and the final HF save.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistContext:
    """Join the torchrun process group if there is one; pick this process's device."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = f"cuda:{local_rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local_rank)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return DistContext(dist.get_rank(), world, local_rank, device)
    return DistContext(device=device)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Sum a few floats over all ranks (one collective per optimizer step)."""
    if not ctx.distributed:
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    if not ctx.distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def decoder_layer_classes(model: Any) -> set[str]:
    """Class names FSDP wraps one by one: the model's ``_no_split_modules`` (decoder layers)."""
    names = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    return names


def wrap_model(model: Any, ctx: DistContext, fsdp: str, amp_dtype: Any = None) -> Any:
    """DDP or FSDP2 under torchrun; the model itself on one process.

    With FSDP and a bf16/fp16 ``amp_dtype``, parameters are all-gathered in that dtype (half the
    traffic) while the sharded fp32 master weights and the gradient reduction stay fp32.
    """
    if not ctx.distributed:
        return model
    if not fsdp:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [ctx.local_rank] if ctx.device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=device_ids)
    return shard_model(model, fsdp, amp_dtype)


def shard_model(model: Any, fsdp: str, amp_dtype: Any = None) -> Any:
    """FSDP2 ``fully_shard`` on every decoder layer, then the root (needs a process group)."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    options: dict[str, Any] = {"reshard_after_forward": fsdp == "full_shard"}
    if amp_dtype is not None:
        options["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=amp_dtype, reduce_dtype=torch.float32
        )
    layer_names = decoder_layer_classes(model)
    for module in model.modules():
        if type(module).__name__ in layer_names:
            fully_shard(module, **options)
    fully_shard(model, **options)
    return model


def unwrap(model: Any) -> Any:
    return (
        getattr(model, "module", model)
        if type(model).__name__ == "DistributedDataParallel"
        else model
    )


@contextlib.contextmanager
def grad_sync(model: Any, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if enabled:
        yield
    elif hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def full_state_dict(model: Any) -> dict[str, Any]:
    """Unsharded CPU state dict on rank 0 ({} elsewhere); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def load_full_state_dict(model: Any, ctx: DistContext, state: dict[str, Any]) -> None:
    """Load a (possibly partial) full state dict read on rank 0 into a wrapped model."""
    if not ctx.distributed:
        unwrap(model).load_state_dict(state, strict=False)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    set_model_state_dict(model, state if ctx.is_main else {}, options=options)


def optimizer_state(model: Any, optimizer: Any) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options)


def load_optimizer_state(model: Any, optimizer: Any, ctx: DistContext, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=ctx.distributed)
    set_optimizer_state_dict(
        model, optimizer, state if ctx.is_main or not ctx.distributed else {}, options=options
    )
