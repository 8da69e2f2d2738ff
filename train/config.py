"""``TrainConfig``: every training knob, its default and its help text, in one place.

The CLI flags (``fastchat-lite train --help``), the YAML loader and docs/training.md are all
generated from this dataclass; defaults follow the Vicuna recipe (lr 2e-5, cosine, 3% warmup,
2048-token context).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.model_loading import ATTENTION_CHOICES
from fastchat_lite.templates import DEFAULT_TEMPLATE


def _help(text: str, **extra: object) -> dict[str, object]:
    return {"help": text, **extra}


@dataclass
class TrainConfig:
    """Options of ``fastchat-lite train``; YAML keys and ``--flags`` use these names."""

    model_name_or_path: str = field(
        default="", metadata=_help("local Hugging Face causal LM directory (config.json inside)")
    )
    data_path: list[str] = field(
        default_factory=list,
        metadata=_help("ShareGPT/OpenAI JSON or JSONL files (outputs of data clean/split/convert)"),
    )
    output_dir: str = field(
        default="", metadata=_help("final model, checkpoints/, train_log.jsonl, loss_curve.png")
    )
    template: str = field(default=DEFAULT_TEMPLATE, metadata=_help("conversation template name"))
    max_length: int = field(default=2048, metadata=_help("tokens per sample / packed row"))
    num_train_epochs: float = field(default=3.0, metadata=_help("epochs (fractions allowed)"))
    max_steps: int = field(
        default=-1, metadata=_help("optimizer steps; > 0 overrides num_train_epochs")
    )
    per_device_train_batch_size: int = field(
        default=2, metadata=_help("rows (packed or padded) per micro-batch per process")
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata=_help("micro-batches per optimizer step per process")
    )
    learning_rate: float = field(default=2e-5, metadata=_help("peak learning rate"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    adam_beta1: float = field(default=0.9, metadata=_help("AdamW beta1"))
    adam_beta2: float = field(default=0.999, metadata=_help("AdamW beta2"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping; 0 = off"))
    warmup_ratio: float = field(default=0.03, metadata=_help("fraction of steps warming up"))
    lr_scheduler_type: str = field(
        default="cosine",
        metadata=_help(
            "learning-rate schedule after warmup",
            choices=["cosine", "linear", "constant", "constant_with_warmup"],
        ),
    )
    packing: bool = field(
        default=True,
        metadata=_help("pack conversations into max_length rows (no attention across them)"),
    )
    group_by_length: bool = field(
        default=True, metadata=_help("without packing: batch similar lengths (less padding)")
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("recompute activations in backward (less memory)")
    )
    attn_implementation: str = field(
        default="auto",
        metadata=_help(
            "auto: flash_attention_2 on CUDA if installed, else sdpa",
            choices=list(ATTENTION_CHOICES),
        ),
    )
    dtype: str = field(
        default="auto", metadata=_help("auto: bf16 (or fp16) autocast on GPU, fp32 on CPU")
    )
    save_steps: int = field(default=500, metadata=_help("checkpoint every N steps; 0 = never"))
    save_total_limit: int = field(
        default=2, metadata=_help("keep the newest N checkpoints; 0 = keep all")
    )
    logging_steps: int = field(default=10, metadata=_help("log every N optimizer steps"))
    seed: int = field(default=42, metadata=_help("seed for init, data order and dropout"))
    lora: bool = field(default=False, metadata=_help("train LoRA adapters (peft) instead"))
    lora_r: int = field(default=8, metadata=_help("LoRA rank"))
    lora_alpha: int = field(default=16, metadata=_help("LoRA alpha"))
    lora_dropout: float = field(default=0.05, metadata=_help("LoRA dropout"))
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata=_help("modules to adapt (peft names; all-linear = every linear but lm_head)"),
    )
    report_to: str = field(
        default="none",
        metadata=_help(
            "metrics sink besides train_log.jsonl", choices=["none", "tensorboard", "wandb"]
        ),
    )
    fsdp: bool | str = field(
        default=False,
        metadata=_help(
            "under torchrun: shard with FSDP (true/full_shard, or shard_grad_op); false = DDP"
        ),
    )
    deepspeed: str | None = field(
        default=None, metadata=_help("not supported by this loop: use fsdp (kept for clarity)")
    )
    resume: str = field(
        default="auto",
        metadata=_help("auto: latest complete checkpoint in output_dir; never; or a path"),
    )
    num_workers: int = field(default=0, metadata=_help("tokenization worker processes"))

    def __post_init__(self) -> None:
        if isinstance(self.data_path, str):
            self.data_path = [self.data_path]
        self.fsdp = parse_fsdp(self.fsdp)

    def validate(self) -> None:
        """Raise a FastChatLiteError naming the option for settings that cannot run."""
        missing = [n for n in ("model_name_or_path", "output_dir") if not getattr(self, n)]
        if not self.data_path:
            missing.append("data_path")
        if missing:
            raise FastChatLiteError(f"train: set {', '.join(missing)} (YAML or --flags)")
        if self.deepspeed:
            raise FastChatLiteError(
                "deepspeed is not supported by fastchat-lite's training loop; "
                "use `fsdp: true` under torchrun (see docs/training.md)"
            )
        positive = ("max_length", "per_device_train_batch_size", "gradient_accumulation_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise FastChatLiteError(f"train: {name} must be >= 1")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise FastChatLiteError("train: set num_train_epochs > 0 or max_steps > 0")


def parse_fsdp(value: bool | str | None) -> str:
    """Normalise ``fsdp`` to "" (off), "full_shard" or "shard_grad_op"."""
    if value is None or value is False:
        return ""
    if value is True:
        return "full_shard"
    text = str(value).strip().lower()
    if text in ("", "0", "false", "no", "off", "none"):
        return ""
    if "shard_grad_op" in text:
        return "shard_grad_op"
    return "full_shard"  # "true", "full_shard", "full_shard auto_wrap", ...
