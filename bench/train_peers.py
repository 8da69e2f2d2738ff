"""The two trainers under test, each as its docs advise, plus the parity self-check that proves
they train on the same ids, the same trained-token mask and the same loss."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from bench.train_workload import TEMPLATE, load_rows, our_samples
from fastchat_lite.masking import encode_conversation

WARMUP_STEPS = 3


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
        def __init__(self) -> None:
            self.steps: list[float] = []
            self.started = 0.0

        def on_step_begin(self, *a, **k):
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.steps.append(time.perf_counter() - self.started)

        @property
        def seconds(self) -> float:
            return sum(self.steps)

    tokenizer = load_tokenizer(model_dir)
    tokenizer.chat_template = chat_template(TEMPLATE)
    dataset = Dataset.from_list(load_rows(data))
    packed = {"packing": True, "padding_free": True, "packing_strategy": "bfd"}
    grouped = {"train_sampling_strategy": "group_by_length"}
    # transformers' documented speed switch; the warm-up run in this process compiles, so the
    # timed run (a fresh model of the same class) reuses the graphs (checked: its slowest step)
    compiled = {**grouped, "torch_compile": True}
    settings = {"trl-packed": packed, "trl-grouped": grouped, "trl-compiled": compiled}[mode]

    def trainer(max_steps: int, timer: StepTimer) -> SFTTrainer:
        sft = SFTConfig(
            output_dir=str(out), use_cpu=True, assistant_only_loss=True,
            max_length=args.max_length, per_device_train_batch_size=args.batch_size,
            num_train_epochs=1, max_steps=max_steps, learning_rate=args.lr,
            lr_scheduler_type="cosine", warmup_steps=0.03, weight_decay=0.0, max_grad_norm=1.0,
            optim="adamw_torch", seed=0, save_strategy="no", report_to="none",
            logging_steps=1_000_000, disable_tqdm=True, dataloader_num_workers=0,
            **settings,
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
            "slowest_step": max(timer.steps), "median_step": statistics.median(timer.steps),
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
