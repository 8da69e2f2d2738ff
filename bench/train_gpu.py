"""bf16 training throughput and MFU of a ~1B Llama on one GPU: flash-attn 2 varlen packing, FSDP.

Not yet run on a GPU (none was lent when it was written); ``--smoke`` runs the same code on CPU
with a tiny model. See docs/benchmarks.md.

Model: built locally from a ``LlamaConfig`` with TinyLlama-1.1B's shape (hidden 2048, 22 layers,
32 heads / 4 KV heads, MLP 5632, vocab 32000), random init: nothing is downloaded. Data: token
ids with the CPU benchmark's shape (conversation lengths lognormal, median 300, clipped to
[32, max_length], the second half of each trained), best-fit packed into ``max_length`` rows.
The step is the trainer's own ``train.loop.train_step`` (``collate_packed`` -> ``cu_seq_lens``
-> ``flash_attn_varlen_func``), fp32 master weights, bf16 autocast, AdamW, and FSDP2
``fully_shard`` on every decoder layer and the root with bf16 parameters / fp32 reduction, in a
world of one process (the FSDP code path runs; sharding saves nothing on one GPU).

MFU = 6 * N * tokens/s / peak, N = all parameters (embeddings and LM head included), real
(non-pad) tokens, attention FLOPs not counted; the peak is the GPU's dense bf16 tensor-core
FLOP/s from the table below (``--peak-tflops`` for another GPU).

Run (CUDA machine, flash-attn installed: pip install -e '.[train,flash]'):
    python bench/train_gpu.py --json /tmp/train_gpu.json
    python bench/train_gpu.py --smoke            # CPU, tiny model: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.config import TrainConfig
from train.dataset import Sample

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, FLOP/s.
PEAK_BF16 = {
    "H200": 989.4e12,
    "H100 SXM": 989.4e12,
    "H100 80GB HBM3": 989.4e12,  # how torch names the SXM part
    "H100 NVL": 835.0e12,
    "H100 PCIe": 756.0e12,
    "A100": 312.0e12,
    "L40S": 362.1e12,
    "L4": 121.0e12,
}

SHAPES = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
               num_attention_heads=32, num_key_value_heads=4, vocab_size=32000),
    "smoke": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=512),
}  # fmt: skip


def peak_flops(device_name: str, override_tflops: float | None) -> tuple[float, str]:
    if override_tflops:
        return override_tflops * 1e12, f"--peak-tflops {override_tflops:g}"
    for key, value in PEAK_BF16.items():
        if key in device_name:
            return value, f"{key} dense bf16 {value / 1e12:.1f} TFLOP/s"
    raise SystemExit(f"no bf16 peak known for {device_name!r}: pass --peak-tflops")


def make_samples(n: int, max_length: int, vocab: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(math.log(300), 1.0, size=n), 32, max_length).astype(int)
    samples = []
    for length in lengths:
        ids = rng.integers(10, vocab, size=length)
        targets = np.full(length, -100)
        start = length // 2  # the reply: the second half of the conversation
        targets[start - 1 : length - 1] = ids[start:]
        samples.append(Sample(ids, targets, int((targets != -100).sum())))
    return samples


def build_model(shape: str, attn: str, max_length: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from train.attention import use_packed_attention

    torch.manual_seed(0)
    config = LlamaConfig(max_position_embeddings=max_length, attn_implementation=attn,
                         **SHAPES[shape])  # fmt: skip
    model = LlamaForCausalLM(config)  # fp32 master weights
    model.config.use_cache = False
    use_packed_attention(model)  # sdpa -> per-document SDPA; flash_attention_2 stays varlen
    return model


def init_single_process_group(cuda: bool) -> None:
    """A world of one, so FSDP2 can shard (its code path, not its memory savings)."""
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=0, world_size=1)


def build_run(args, model, samples, device: str):
    """The trainer's TrainingRun around an FSDP2-wrapped model (no files, no logger output)."""
    import torch

    from train import distributed as D
    from train.loop import TrainingRun
    from train.metrics import TrainLogger
    from train.model import build_optimizer
    from train.packing import BatchShape, DataPlan

    amp = torch.bfloat16 if device.startswith("cuda") else None
    config = TrainConfig(max_length=args.max_length, per_device_train_batch_size=args.batch_size,
                         learning_rate=args.lr, warmup_ratio=0.0, lr_scheduler_type="constant",
                         attn_implementation=args.attn, fsdp=True)  # fmt: skip
    if args.gradient_checkpointing:
        from train.model import enable_activation_checkpointing

        enable_activation_checkpointing(model)
    model = D.shard_model(model.to(device), "full_shard", amp)
    model.train()
    shape = BatchShape(args.max_length, args.batch_size, accumulation=1)
    plan = DataPlan([len(s) for s in samples], shape, seed=0)
    optimizer, scheduler = build_optimizer(model, config, args.warmup_steps + args.steps)
    return TrainingRun(
        config=config, ctx=D.DistContext(device=device), model=model, optimizer=optimizer,
        scheduler=scheduler, scaler=torch.amp.GradScaler(enabled=False), samples=samples,
        plan=plan, total_steps=args.warmup_steps + args.steps, pad_id=0, amp_dtype=amp,
        logger=TrainLogger(Path("."), "none", {}, enabled=False), trainable=[],
    )  # fmt: skip


def timed_steps(run, steps: list, device: str) -> tuple[float, int, list[float]]:
    import torch

    from train.loop import train_step

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    started, real, losses = time.perf_counter(), 0, []
    for step in steps:
        loss_sum, trained, tokens = train_step(run, step)
        real += tokens
        losses.append(loss_sum / max(trained, 1))
    sync()
    return time.perf_counter() - started, real, losses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU (sdpa)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8, help="packed rows per micro-batch")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--attn", default="flash_attention_2", help="or sdpa (per-document)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    import torch

    from fastchat_lite.model_loading import resolve_attention
    from train.packing import plan_epoch

    cuda = torch.cuda.is_available() and not args.smoke
    if args.smoke:
        args.attn, args.max_length, args.batch_size, args.steps = "sdpa", 256, 2, 3
    elif not cuda:
        raise SystemExit("no CUDA GPU: run on a GPU machine, or pass --smoke")
    device = "cuda:0" if cuda else "cpu"
    attn = resolve_attention(args.attn, cuda=cuda)  # says how to install flash-attn if missing
    init_single_process_group(cuda)
    model = build_model("smoke" if args.smoke else "1b", attn, args.max_length)
    attn = model.config._attn_implementation
    params = sum(p.numel() for p in model.parameters())
    rows_needed = (args.warmup_steps + args.steps) * args.batch_size
    samples = make_samples(rows_needed * 8, args.max_length, model.config.vocab_size)
    run = build_run(args, model, samples, device)
    steps = plan_epoch([len(s) for s in samples], run.plan.shape, seed=0, epoch=0)
    steps = steps[: args.warmup_steps + args.steps]
    if len(steps) < args.warmup_steps + args.steps:
        raise SystemExit(f"only {len(steps)} packed steps of data: lower --steps")
    timed_steps(run, steps[: args.warmup_steps], device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds, real, losses = timed_steps(run, steps[args.warmup_steps :], device)
    tokens_per_s = real / seconds
    name = torch.cuda.get_device_name(0) if cuda else "cpu (smoke)"
    result = {"device": name, "attn": attn, "parameters": params, "tokens_per_s": tokens_per_s,
              "steps": args.steps, "real_tokens": real, "loss_first": losses[0],
              "loss_last": losses[-1], "args": vars(args)}  # fmt: skip
    print(f"{name}: {params / 1e9:.3f}B parameters, {attn}, {args.batch_size} x "
          f"{args.max_length}-token packed rows per step; {real} real tokens in {args.steps} "
          f"steps: {tokens_per_s:,.0f} tokens/s; loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}")  # fmt: skip
    if cuda:
        peak, source = peak_flops(name, args.peak_tflops)
        result.update(mfu=6 * params * tokens_per_s / peak, peak=source,
                      max_memory_gib=torch.cuda.max_memory_allocated() / 2**30)  # fmt: skip
        print(f"MFU = 6 * N * tokens/s / peak = {result['mfu']:.1%} (peak: {source}); "
              f"max GPU memory {result['max_memory_gib']:.1f} GiB")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
