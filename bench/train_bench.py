"""Training throughput: FastChat-style padding vs length grouping vs our packing (CPU, tiny Llama).

Workload (ShareGPT-like, long-tailed): each conversation's token length is
lognormal(median 300, sigma 1.0) clipped to [32, max_length]; about half of every
conversation is an assistant reply (trained). All three modes train on the *same* samples
for one epoch, split into the same number of optimizer steps, with the same micro-batch
width (``--batch-size`` rows of up to ``--max-length`` tokens) and the same loss/step code
(train.loop.loss_sum, train.collate.collate_rows):

  (a) fastchat: every sample padded to max_length (FastChat's train.py)
  (b) grouped:  pad to the longest row of the micro-batch, length-grouped order
  (c) packed:   best-fit packing, block-diagonal attention via restarting position_ids

Reported: real (non-pad) tokens/s and the ratio to (a) and (b); then peak RSS growth of one
packed step with and without gradient checkpointing (separate processes).

Run: python bench/train_bench.py            (about 3-5 min on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.collate import collate_rows
from train.dataset import Sample
from train.packing import BatchShape, plan_epoch


def make_samples(n: int, max_length: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(math.log(300), 1.0, size=n), 32, max_length).astype(int)
    samples = []
    for length in lengths:
        ids = rng.integers(10, 2000, size=length)
        targets = np.full(length, -100)
        start = length // 2  # the reply: second half of the conversation
        targets[start - 1 : length - 1] = ids[start:]
        samples.append(Sample(ids, targets, int((targets != -100).sum())))
    return samples


def build_model(gradient_checkpointing: bool = False):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        attn_implementation="sdpa",
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    if gradient_checkpointing:
        from train.model import enable_activation_checkpointing

        enable_activation_checkpointing(model)
    model.train()
    return model


def micro_batches(mode: str, samples: list[Sample], args) -> list[list[list[int]]]:
    lengths = [len(s) for s in samples]
    shape = BatchShape(
        args.max_length, args.batch_size, accumulation=1,
        packing=mode == "packed", group_by_length=mode == "grouped",
    )  # fmt: skip
    return [mb for step in plan_epoch(lengths, shape, seed=0, epoch=0) for mb in step if mb]


def run_mode(mode: str, model, samples: list[Sample], args) -> dict:
    import torch

    from train.loop import loss_sum

    batches = micro_batches(mode, samples, args)
    pad_to = args.max_length if mode == "fastchat" else None
    accumulation = math.ceil(len(batches) / args.steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    warm = collate_rows([[samples[i] for i in r] for r in batches[0]], 0, pad_to)
    loss_sum(model, warm, "cpu", None).backward()  # allocator / kernel warm-up, not timed
    optimizer.zero_grad()
    real = slots = 0
    started = time.perf_counter()
    for start in range(0, len(batches), accumulation):
        group = batches[start : start + accumulation]
        trained = sum(samples[i].num_trained for mb in group for row in mb for i in row)
        for mb in group:
            batch = collate_rows([[samples[i] for i in r] for r in mb], 0, pad_to)
            (loss_sum(model, batch, "cpu", None) / trained).backward()
            real += batch["real_tokens"]
            slots += batch["input_ids"].numel()
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - started
    return {
        "mode": mode,
        "micro_batches": len(batches),
        "real_tokens": real,
        "padding": 1 - real / slots,
        "seconds": seconds,
        "tokens_per_s": real / seconds,
    }


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _memory_child(gradient_checkpointing: bool, args, queue) -> None:
    """Peak RSS above the pre-step level while one packed micro-batch runs fwd+bwd."""
    import threading

    import torch

    from train.loop import loss_sum

    torch.set_num_threads(args.threads)
    model = build_model(gradient_checkpointing)
    samples = make_samples(args.samples, args.max_length)
    rows = micro_batches("packed", samples, args)[0]
    batch = collate_rows([[samples[i] for i in r] for r in rows], 0)
    loss_sum(model, batch, "cpu", None).backward()  # grads + allocator warm, then measure
    before, peak, done = _rss_mib(), [0.0], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.001)

    thread = threading.Thread(target=poll)
    thread.start()
    loss_sum(model, batch, "cpu", None).backward()
    done.set()
    thread.join()
    queue.put(peak[0] - before)


def peak_memory_mb(gradient_checkpointing: bool, args) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(gradient_checkpointing, args, queue))
    proc.start()
    value = queue.get(timeout=600)
    proc.join()
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=2, help="rows per micro-batch")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    samples = make_samples(args.samples, args.max_length)
    lengths = np.array([len(s) for s in samples])
    print(
        f"{len(samples)} samples, tokens: median {np.median(lengths):.0f}, "
        f"mean {lengths.mean():.0f}, max {lengths.max()} (max_length {args.max_length})"
    )
    results = {}
    for mode in ("fastchat", "grouped", "packed"):
        r = run_mode(mode, build_model(), samples, args)
        results[mode] = r
        print(f"({mode:8s}) {r['micro_batches']:3d} micro-batches, padding {r['padding']:.0%}, "
              f"{r['seconds']:.1f}s, {r['tokens_per_s']:.0f} real tokens/s")  # fmt: skip
    packed = results["packed"]["tokens_per_s"]
    ratio_a = packed / results["fastchat"]["tokens_per_s"]
    ratio_b = packed / results["grouped"]["tokens_per_s"]
    print(f"packed / fastchat-pad = {ratio_a:.2f}x (target >= 3x)")
    print(f"packed / grouped      = {ratio_b:.2f}x (target >= 1.2x)")
    memory = {gc: peak_memory_mb(gc, args) for gc in (False, True)}
    print(
        f"peak RSS above steady state, one packed micro-batch fwd+bwd: {memory[False]:.0f} MiB "
        f"without, {memory[True]:.0f} MiB with gradient checkpointing"
    )
    if args.json:
        payload = {"results": results, "ratios": {"vs_fastchat": ratio_a, "vs_grouped": ratio_b},
                   "peak_rss_mib": {"no_gc": memory[False], "gc": memory[True]}}  # fmt: skip
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
