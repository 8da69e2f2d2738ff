"""A Llama checkpoint's tensors under llama.cpp's names, in the layout and types it expects.

Read tensor by tensor from the safetensors files (a 7B export never holds two copies of the
model). Q and K projections are permuted back from Hugging Face's rotate-half layout to the
interleaved rotary layout llama.cpp's kernels use; norms stay f32 as in llama.cpp's converter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastchat_lite.errors import FastChatLiteError

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_NAMES = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_SKIPPED = ("rotary_emb.inv_freq",)  # recomputed by llama.cpp from the metadata
BLOCK_SIZES = {"f32": 1, "f16": 1, "q8_0": 32}


@dataclass
class TensorPlan:
    """What was written: per GGUF tensor its type, and which tensors fell back."""

    types: dict[str, str] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)


def gguf_name(hf_name: str) -> str | None:
    """llama.cpp's name for a Hugging Face Llama tensor (``None``: not stored in GGUF)."""
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    if hf_name.endswith(_SKIPPED):
        return None
    match = _LAYER.match(hf_name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"blk.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    raise FastChatLiteError(
        f"GGUF export: tensor {hf_name!r} has no llama.cpp counterpart (only Llama-architecture "
        "models without biases are supported)"
    )


def interleave_rotary(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a Q/K projection reordered from rotate-half (HF) to interleaved pairs."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def safetensors_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / shard for shard in shards]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    raise FastChatLiteError(
        f"{model_dir}: no model.safetensors; GGUF export reads safetensors checkpoints "
        "(re-save the model with save_pretrained)"
    )


def iter_hf_tensors(model_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 array) for every tensor of the checkpoint, one at a time."""
    from safetensors import safe_open

    for path in safetensors_files(model_dir):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                yield name, handle.get_tensor(name).float().numpy()


def gguf_tensors(
    model_dir: Path, hparams: dict[str, Any], dtype: str
) -> Iterator[tuple[str, np.ndarray, str]]:
    """(GGUF name, data, type written) in checkpoint order; data is already converted."""
    n_head, n_kv = hparams["n_head"], hparams["n_head_kv"]
    for hf_name, data in iter_hf_tensors(model_dir):
        name = gguf_name(hf_name)
        if name is None:
            continue
        if name.endswith("attn_q.weight"):
            data = interleave_rotary(data, n_head)
        elif name.endswith("attn_k.weight"):
            data = interleave_rotary(data, n_kv)
        yield (name, *_convert(data, dtype))


def _convert(data: np.ndarray, dtype: str) -> tuple[np.ndarray, str]:
    """Norms and other 1-D tensors stay f32; rows that do not split into quant blocks fall
    back to f16 (llama.cpp's converter does the same)."""
    if data.ndim < 2 or dtype == "f32":
        return data.astype(np.float32), "f32"
    if dtype == "q8_0" and data.shape[-1] % BLOCK_SIZES["q8_0"] == 0:
        import gguf

        return gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), "q8_0"
    return data.astype(np.float16), "f16"
