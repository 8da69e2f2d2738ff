"""Training throughput side by side: our trainer vs TRL's SFTTrainer, same model, data and run.

Workload: 200 synthetic multi-turn conversations (train.synthetic: lognormal reply lengths,
1-3 exchanges, median ~300 tokens), a tiny random-init Llama (hidden 256, 4 layers, 4 heads /
2 KV heads, vocab 2,048, SDPA) with a BPE tokenizer built locally, fp32, ``--threads`` CPU
threads, max_length 2048, micro-batches of 2 rows, one epoch, lr 2e-3 cosine, 3% warmup.

Modes, each run in a fresh process, alternated, ``--repeats`` times:

  ours-packed   fastchat-lite train, packing: true (flattened rows, per-document attention)
  ours-grouped  fastchat-lite train, packing: false, group_by_length: true
  trl-packed    SFTTrainer packing=True, padding_free=True, packing_strategy="bfd"
  trl-grouped   SFTTrainer without packing, train_sampling_strategy="group_by_length"
  trl-compiled  trl-grouped with torch_compile=True (transformers' own speed switch)

TRL gets the chat template we export (``{% generation %}`` around replies) and
``assistant_only_loss=True``; a self-check first proves both tokenize every conversation to the
same ids and trained-token mask and give the same loss on the same batch. Each process runs 3
untimed warm-up steps of its mode on a throwaway copy of the model, then one timed epoch; step
time is summed over optimizer steps (TRL's excludes its data loading). Reported: real (non-pad)
and trained tokens/s, the whole process's peak RSS, and the loss over every trained token of
the 200 conversations after the epoch (same evaluation code for both). Then a micro-benchmark
of the attention alone and the activation-checkpointing memory figure.

Run: python bench/train_bench.py --json /tmp/train_bench.json   (needs the bench extra: trl)
Pieces: train_workload (model + data), train_peers (the two trainers, parity), train_probes
(attention alone, activation-checkpointing memory); this file runs and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from bench.train_peers import eval_loss, run_ours, run_trl, self_check
from bench.train_probes import attention_micro_bench, peak_memory_mb
from bench.train_workload import build_workload, our_samples

MODES = ("ours-packed", "ours-grouped", "trl-packed", "trl-grouped", "trl-compiled")


def child(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work, model_dir, data = Path(args.workdir), Path(args.workdir) / "model", Path(args.data)
    out = Path(tempfile.mkdtemp(prefix=f"{args.child}-", dir=work))
    run = run_ours if args.child.startswith("ours") else run_trl
    result = run(args.child, model_dir, data, out, args)
    samples = our_samples(model_dir, data, args.max_length)
    real, trained = sum(len(s) for s in samples), sum(s.num_trained for s in samples)
    result.update(
        mode=args.child, real_tokens=real, trained_tokens=trained,
        tokens_per_s=real / result["seconds"], trained_per_s=trained / result["seconds"],
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        loss=eval_loss(result.pop("model"), samples, args.max_length),
    )  # fmt: skip
    Path(args.result).write_text(json.dumps(result))
    return 0


def run_child(mode: str, work: Path, data: Path, args, index: int) -> dict:
    result = work / f"result-{mode}-{index}.json"
    command = [
        sys.executable, __file__, "--child", mode, "--workdir", str(work), "--data", str(data),
        "--result", str(result), "--threads", str(args.threads), "--lr", str(args.lr),
        "--max-length", str(args.max_length), "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(result.read_text())


# ---- the run ------------------------------------------------------------------------------


def timed_runs(work: Path, data: Path, args) -> list[dict]:
    """Every mode ``--repeats`` times, one fresh process each, the order rotated every round."""
    runs = []
    for r in range(args.repeats):
        order = args.modes[r % len(args.modes) :] + args.modes[: r % len(args.modes)]
        for mode in order:
            result = run_child(mode, work, data, args, r)
            runs.append(result)
            slowest = (
                f", slowest step {result['slowest_step']:.2f} s (median "
                f"{result['median_step']:.2f} s)"
                if "slowest_step" in result
                else ""
            )
            rss = result["peak_rss_mib"]
            print(f"  run {r + 1} {mode:13s} {result['tokens_per_s']:6.0f} real tok/s, loss "
                  f"{result['loss']:.3f}, peak RSS {rss:.0f} MiB{slowest}")  # fmt: skip
    return runs


def summarize(runs: list[dict]) -> dict:
    by_mode: dict[str, dict] = {}
    for mode in MODES:
        rs = [r for r in runs if r["mode"] == mode]
        if not rs:
            continue
        entry = {"runs": len(rs), "steps": rs[0]["steps"]}
        for key in ("tokens_per_s", "trained_per_s", "peak_rss_mib", "loss"):
            values = [r[key] for r in rs]
            entry[key] = {"median": statistics.median(values), "min": min(values),
                          "max": max(values)}  # fmt: skip
        by_mode[mode] = entry
    return by_mode


def speed_ratios(summary: dict) -> dict:
    """ours-packed over every other mode, and over TRL's fastest, in median real tokens/s."""
    speed = {m: e["tokens_per_s"]["median"] for m, e in summary.items()}
    if "ours-packed" not in speed:
        return {}
    ratios = {f"ours-packed / {m}": speed["ours-packed"] / v for m, v in speed.items()
              if m != "ours-packed"}  # fmt: skip
    trl = [m for m in speed if m.startswith("trl")]
    if trl:
        best = max(trl, key=speed.get)
        ratios[f"ours-packed / TRL best ({best})"] = speed["ours-packed"] / speed[best]
    return ratios


def print_report(summary: dict, ratios: dict) -> None:
    print(f"\n{'mode':13s} {'steps':>5s} {'real tok/s (min-max)':>24s} {'trained tok/s':>14s} "
          f"{'peak RSS MiB':>13s} {'loss after epoch':>17s}")  # fmt: skip
    for mode, e in summary.items():
        t, tr = e["tokens_per_s"], e["trained_per_s"]
        print(f"{mode:13s} {e['steps']:5d} {t['median']:8.0f} ({t['min']:.0f}-{t['max']:.0f})"
              f"{'':>5s} {tr['median']:14.0f} {e['peak_rss_mib']['median']:13.0f} "
              f"{e['loss']['median']:17.3f}")  # fmt: skip
    for name, value in ratios.items():
        print(f"{name:38s} {value:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=2, help="rows per micro-batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    for hidden in ("--workdir", "--data", "--result"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    import torch

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        work = Path(tmp)
        model_dir, data = build_workload(work, args)
        samples = our_samples(model_dir, data, args.max_length)
        lengths = sorted(len(s) for s in samples)
        trained = sum(s.num_trained for s in samples)
        print(f"{len(samples)} conversations, {sum(lengths)} tokens ({trained} trained): "
              f"median {statistics.median(lengths):.0f}, max {lengths[-1]}; "
              f"load average {load_before[0]:.1f}")  # fmt: skip
        check = self_check(model_dir, data, args)
        same = check["conversations"] - check["mismatched"]
        print(f"self-check vs TRL: {same}/{check['conversations']} conversations with identical "
              f"ids and trained-token mask; loss on 8 of them: TRL {check['trl_loss']:.6f}, "
              f"ours {check['our_loss']:.6f}")  # fmt: skip
        if not check["ok"]:
            print("self-check FAILED: the comparison would not be like for like")
            return 1
        attention = attention_micro_bench(samples, args)
        print(f"attention alone, fwd+bwd over {attention['micro_batches']} packed micro-batches: "
              f"packed {attention['packed']:.0f} ms, sum of per-document SDPA "
              f"{attention['separate']:.0f} ms (packed/sum {attention['ratio']:.2f}, target <= "
              f"1.10), SDPA with a block-diagonal mask {attention['masked']:.0f} ms")  # fmt: skip
        runs = timed_runs(work, data, args)
        memory = {gc: peak_memory_mb(gc, model_dir, data, args) for gc in (False, True)}
    summary = summarize(runs)
    ratios = speed_ratios(summary)
    print_report(summary, ratios)
    print("targets: ours-packed / ours-grouped >= 1.3x, / TRL best >= 2x")
    print(f"peak RSS above steady state, one packed micro-batch fwd+bwd: {memory[False]:.0f} MiB "
          f"without, {memory[True]:.0f} MiB with gradient checkpointing")  # fmt: skip
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (2 cores)")
    if args.json:
        payload = {"summary": summary, "ratios": ratios, "runs": runs, "self_check": check,
                   "attention_ms": attention, "activation_checkpointing_mib": memory,
                   "load_average": [load_before[0], load_after[0]], "args": vars(args)}  # fmt: skip
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
