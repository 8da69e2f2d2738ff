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

TRL gets the chat template we export (``{% generation %}`` around replies) and
``assistant_only_loss=True``; a self-check first proves both tokenize every conversation to the
same ids and trained-token mask and give the same loss on the same batch. Each process runs 3
untimed warm-up steps of its mode on a throwaway copy of the model, then one timed epoch; step
time is summed over optimizer steps (TRL's excludes its data loading). Reported: real (non-pad)
and trained tokens/s, the whole process's peak RSS, and the loss over every trained token of
the 200 conversations after the epoch (same evaluation code for both). Then a micro-benchmark
of the attention alone and the activation-checkpointing memory figure.

Run: python bench/train_bench.py --json /tmp/train_bench.json   (needs the bench extra: trl)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from fastchat_lite.masking import encode_conversation
from fastchat_lite.messages import to_messages
from train.synthetic import synthetic_conversations

TEMPLATE = "vicuna_v1.1"
MODES = ("ours-packed", "ours-grouped", "trl-packed", "trl-grouped")
WARMUP_STEPS = 3


# ---- workload: one model directory and one JSONL file both trainers read ------------------


def build_workload(root: Path, args) -> tuple[Path, Path]:
    """Save the tiny model + tokenizer and the conversations (cut like our trainer cuts them)."""
    from fastchat_lite.model_loading import load_tokenizer
    from fastchat_lite.tiny import TinyModelConfig, build_tiny_model, texts_of

    records = synthetic_conversations(args.conversations, seed=0, median_words=90)
    model_dir = build_tiny_model(root / "model", list(texts_of(records)), TinyModelConfig())
    tokenizer = load_tokenizer(model_dir)
    rows = []
    for record in records:
        encoded = encode_conversation(record, tokenizer, TEMPLATE, args.max_length)
        if encoded.hard_truncated:
            continue  # TRL would cut it elsewhere; keep only conversations both see whole
        messages = to_messages(record)[: len(to_messages(record)) - encoded.turns_dropped]
        rows.append({"messages": [{"role": m.role, "content": m.content} for m in messages]})
    data = root / "conversations.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return model_dir, data


def load_rows(data: Path) -> list[dict]:
    return [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]


def our_samples(model_dir: Path, data: Path, max_length: int) -> list:
    from fastchat_lite.model_loading import load_tokenizer
    from train.dataset import load_samples

    tokenizer = load_tokenizer(model_dir)
    samples, stats = load_samples([str(data)], tokenizer, TEMPLATE, max_length, progress=False)
    assert stats.kept == stats.records and stats.truncated == 0, stats.summary()
    return samples


# ---- the two trainers ---------------------------------------------------------------------


def run_ours(mode: str, model_dir: Path, data: Path, out: Path, args) -> dict:
    from train.config import TrainConfig
    from train.recipe import train

    def config(output_dir: Path, max_steps: int) -> TrainConfig:
        return TrainConfig(
            model_name_or_path=str(model_dir), data_path=[str(data)], output_dir=str(output_dir),
            template=TEMPLATE, max_length=args.max_length, num_train_epochs=1, max_steps=max_steps,
            per_device_train_batch_size=args.batch_size, learning_rate=args.lr, warmup_ratio=0.03,
            packing=mode == "ours-packed", group_by_length=True, save_steps=0,
            logging_steps=1_000_000, seed=0, resume="never",
        )  # fmt: skip

    train(config(out / "warmup", WARMUP_STEPS), progress=False)
    train(config(out / "run", -1), progress=False)
    record = json.loads((out / "run" / "train_log.jsonl").read_text().splitlines()[-1])
    samples = our_samples(model_dir, data, args.max_length)
    real = sum(len(s) for s in samples)
    return {"seconds": real / record["tokens_per_s"], "steps": record["step"], "model": out / "run"}


def run_trl(mode: str, model_dir: Path, data: Path, out: Path, args) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from fastchat_lite.jinja_export import chat_template
    from fastchat_lite.model_loading import load_model, load_tokenizer

    class StepTimer(TrainerCallback):
        seconds, started = 0.0, 0.0

        def on_step_begin(self, *a, **k):
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.seconds += time.perf_counter() - self.started

    tokenizer = load_tokenizer(model_dir)
    tokenizer.chat_template = chat_template(TEMPLATE)
    dataset = Dataset.from_list(load_rows(data))
    packed = {"packing": True, "padding_free": True, "packing_strategy": "bfd"}
    grouped = {"train_sampling_strategy": "group_by_length"}

    def trainer(max_steps: int, timer: StepTimer) -> SFTTrainer:
        sft = SFTConfig(
            output_dir=str(out), use_cpu=True, assistant_only_loss=True,
            max_length=args.max_length, per_device_train_batch_size=args.batch_size,
            num_train_epochs=1, max_steps=max_steps, learning_rate=args.lr,
            lr_scheduler_type="cosine", warmup_steps=0.03, weight_decay=0.0, max_grad_norm=1.0,
            optim="adamw_torch", seed=0, save_strategy="no", report_to="none",
            logging_steps=1_000_000, disable_tqdm=True, dataloader_num_workers=0,
            **(packed if mode == "trl-packed" else grouped),
        )  # fmt: skip
        model = load_model(model_dir, dtype="fp32", attn_implementation="sdpa")
        return SFTTrainer(
            model=model, args=sft, train_dataset=dataset, processing_class=tokenizer,
            callbacks=[timer],
        )  # fmt: skip

    trainer(WARMUP_STEPS, StepTimer()).train()
    timer = StepTimer()
    run = trainer(-1, timer)
    started = time.perf_counter()
    run.train()
    wall = time.perf_counter() - started
    run.model.save_pretrained(out / "run")
    return {"seconds": timer.seconds, "wall_seconds": wall, "steps": run.state.global_step,
            "model": out / "run"}  # fmt: skip


def eval_loss(model_path: Path, samples: list, max_length: int) -> float:
    """Mean cross-entropy over every trained token of the workload (one code path for both)."""
    import torch

    from fastchat_lite.model_loading import load_model
    from train.attention import use_packed_attention
    from train.collate import collate_packed
    from train.loop import loss_sum
    from train.packing import pack_rows

    model = load_model(model_path, dtype="fp32", attn_implementation="sdpa").eval()
    use_packed_attention(model)
    rows = pack_rows([len(s) for s in samples], list(range(len(samples))), max_length)
    total = 0.0
    with torch.no_grad():
        for row in rows:
            total += float(
                loss_sum(model, collate_packed([[samples[i] for i in row]], 0), "cpu", None)
            )
    return total / sum(s.num_trained for s in samples)


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


# ---- correctness against the peer, attention alone, memory --------------------------------


def self_check(model_dir: Path, data: Path, args) -> dict:
    """Same ids, same trained-token mask and the same loss on one batch, or the bench stops."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from fastchat_lite.jinja_export import chat_template
    from fastchat_lite.model_loading import load_model, load_tokenizer
    from train.collate import collate_packed
    from train.loop import loss_sum

    tokenizer = load_tokenizer(model_dir)
    tokenizer.chat_template = chat_template(TEMPLATE)
    rows = load_rows(data)
    sft = SFTConfig(output_dir=str(data.parent / "check"), use_cpu=True, report_to="none",
                    assistant_only_loss=True, max_length=args.max_length)  # fmt: skip
    model = load_model(model_dir, dtype="fp32", attn_implementation="sdpa")
    trainer = SFTTrainer(model=model, args=sft, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer)  # fmt: skip
    theirs = list(trainer.train_dataset)
    mismatched = 0
    for row, example in zip(rows, theirs, strict=True):
        ours = encode_conversation(row, tokenizer, TEMPLATE, args.max_length)
        same_mask = [x != -100 for x in ours.labels] == [x != -100 for x in example["labels"]]
        mismatched += int(ours.input_ids != example["input_ids"] or not same_mask)
    samples = our_samples(model_dir, data, args.max_length)[:8]
    collator = DataCollatorForLanguageModeling(tokenizer.pad_token_id, padding_free=True)
    batch = collator([{k: e[k] for k in ("input_ids", "labels")} for e in theirs[:8]])
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(model, dict(batch)))
        ours_sum = loss_sum(model, collate_packed([samples], tokenizer.pad_token_id), "cpu", None)
    our_loss = float(ours_sum) / sum(s.num_trained for s in samples)
    ok = mismatched == 0 and abs(trl_loss - our_loss) <= 1e-5 * abs(our_loss)
    return {"conversations": len(rows), "mismatched": mismatched, "trl_loss": trl_loss,
            "our_loss": our_loss, "ok": ok}  # fmt: skip


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


# ---- the run ------------------------------------------------------------------------------


def timed_runs(work: Path, data: Path, args) -> list[dict]:
    """Every mode ``--repeats`` times, one fresh process each, the order rotated every round."""
    runs = []
    for r in range(args.repeats):
        order = args.modes[r % len(args.modes) :] + args.modes[: r % len(args.modes)]
        for mode in order:
            result = run_child(mode, work, data, args, r)
            runs.append(result)
            print(f"  run {r + 1} {mode:13s} {result['tokens_per_s']:6.0f} real tok/s, loss "
                  f"{result['loss']:.3f}, peak RSS {result['peak_rss_mib']:.0f} MiB")  # fmt: skip
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
