"""Load a local Hugging Face causal LM with the right dtype and attention kernel.

The one place that decides ``attn_implementation``: SDPA by default, flash-attn 2 when asked
for and installed (with a clear message when it is not), eager as the last resort.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fastchat_lite.errors import FastChatLiteError, MissingExtraError

ATTENTION_CHOICES = ("auto", "sdpa", "flash_attention_2", "eager")


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_attention(requested: str = "auto", *, cuda: bool | None = None) -> str:
    """Pick the attention kernel; ``auto`` prefers flash-attn 2 on CUDA, else SDPA."""
    if requested not in ATTENTION_CHOICES:
        raise FastChatLiteError(
            f"attn_implementation {requested!r} is not one of {', '.join(ATTENTION_CHOICES)}"
        )
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if requested == "auto":
        return "flash_attention_2" if cuda and flash_attn_available() else "sdpa"
    if requested == "flash_attention_2":
        if not flash_attn_available():
            raise MissingExtraError(
                "attn_implementation=flash_attention_2 needs flash-attn, which is not installed: "
                "on a CUDA machine run `pip install 'fastchat-lite[flash]'` "
                "(it builds from source), or use attn_implementation=sdpa"
            )
        if not cuda:
            raise FastChatLiteError("flash_attention_2 needs a CUDA GPU; use sdpa on CPU")
    return requested


def resolve_dtype(requested: str = "auto", *, cuda: bool | None = None) -> Any:
    """``auto``: bf16 on a GPU that supports it, fp16 on older GPUs, fp32 on CPU."""
    import torch

    if cuda is None:
        cuda = torch.cuda.is_available()
    if requested == "auto":
        if not cuda:
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if requested not in table:
        raise FastChatLiteError(f"dtype {requested!r} is not one of auto, {', '.join(table)}")
    return table[requested]


def check_model_dir(path: str | Path) -> Path:
    model_dir = Path(path)
    if not (model_dir / "config.json").is_file():
        raise FastChatLiteError(
            f"{model_dir} is not a Hugging Face model directory (no config.json); "
            "pass a local directory saved with save_pretrained"
        )
    return model_dir


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(check_model_dir(path)))
    if not getattr(tokenizer, "is_fast", False):
        raise FastChatLiteError(f"{path}: a fast (Rust) tokenizer is required for offsets")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def load_model(
    path: str | Path,
    *,
    dtype: str = "auto",
    attn_implementation: str = "auto",
    device: str | None = None,
) -> Any:
    """``AutoModelForCausalLM`` from a local directory (never downloads)."""
    from transformers import AutoModelForCausalLM

    model_dir = check_model_dir(path)
    cuda = device is not None and device.startswith("cuda") if device else None
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir),
        dtype=resolve_dtype(dtype, cuda=cuda),
        attn_implementation=resolve_attention(attn_implementation, cuda=cuda),
        local_files_only=True,
    )
    if device:
        model.to(device)
    return model
