"""Measurements beside the timed epochs: the attention alone (packed vs per-document vs masked
SDPA) and the activation-checkpointing memory figure."""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path

from bench.train_workload import our_samples


def _fwd_bwd_ms(fn, *tensors, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats + 1):  # the first call warms the kernels up
        started = time.perf_counter()
        sum(out.sum() for out in fn(*tensors)).backward()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) * 1000


class _Attention:  # what packed_sdpa_forward reads from a Llama attention module
    num_key_value_groups, training = 2, True


def _packed(q, k, v, cu_seq_lens) -> list:
    from train.attention import packed_sdpa_forward

    return [packed_sdpa_forward(_Attention(), q, k, v, None, cu_seq_lens_q=cu_seq_lens)[0]]


def _separate(docs) -> list:
    import torch.nn.functional as F

    return [F.scaled_dot_product_attention(*d, is_causal=True, enable_gqa=True) for d in docs]


def _masked(q, k, v, mask) -> list:
    """What SDPA runs under transformers' block-diagonal mask (GQA heads repeated, full row)."""
    import torch.nn.functional as F

    k, v = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    return [F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None])]


def attention_micro_bench(samples: list, args) -> dict:
    """fwd+bwd of the attention alone on real packed micro-batches (4 heads / 2 KV, dim 64)."""
    import torch

    from train.packing import BatchShape, plan_epoch

    shape = BatchShape(args.max_length, args.batch_size, accumulation=1)
    micro = [mb for step in plan_epoch([len(s) for s in samples], shape, 0, 0) for mb in step]
    totals = {"packed": 0.0, "separate": 0.0, "masked": 0.0, "micro_batches": min(3, len(micro))}
    for mb in micro[:3]:
        lengths = torch.tensor([len(samples[i]) for row in mb for i in row])
        n = int(lengths.sum())
        q = torch.randn(1, 4, n, 64, requires_grad=True)
        k, v = (torch.randn(1, 2, n, 64, requires_grad=True) for _ in range(2))
        cu = torch.cat([torch.zeros(1), lengths.cumsum(0)]).to(torch.int32)
        docs = [[torch.randn(1, h, m, 64, requires_grad=True) for h in (4, 2, 2)] for m in lengths]
        doc_of = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        mask = (doc_of[:, None] == doc_of[None, :]) & torch.ones(n, n, dtype=torch.bool).tril()
        totals["packed"] += _fwd_bwd_ms(_packed, q, k, v, cu)
        totals["separate"] += _fwd_bwd_ms(_separate, docs)
        totals["masked"] += _fwd_bwd_ms(_masked, q, k, v, mask)
    totals["ratio"] = totals["packed"] / totals["separate"]
    return totals


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _memory_child(gradient_checkpointing: bool, model_dir: str, data: str, args, queue) -> None:
    """Peak RSS above the pre-step level while one packed micro-batch runs fwd+bwd."""
    import threading

    import torch

    from fastchat_lite.model_loading import load_model
    from train.attention import use_packed_attention
    from train.collate import collate_packed
    from train.loop import loss_sum
    from train.model import enable_activation_checkpointing
    from train.packing import pack_rows

    torch.set_num_threads(args.threads)
    model = load_model(model_dir, dtype="fp32", attn_implementation="sdpa")
    use_packed_attention(model)
    if gradient_checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    samples = our_samples(Path(model_dir), Path(data), args.max_length)
    rows = pack_rows([len(s) for s in samples], list(range(len(samples))), args.max_length)
    batch = collate_packed([[samples[i] for i in r] for r in rows[: args.batch_size]], 0)
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


def peak_memory_mb(gradient_checkpointing: bool, model_dir: Path, data: Path, args) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    call = (gradient_checkpointing, str(model_dir), str(data), args, queue)
    proc = ctx.Process(target=_memory_child, args=call)
    proc.start()
    value = queue.get(timeout=600)
    proc.join()
    return value
