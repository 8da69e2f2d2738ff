"""``export_gguf``: a trained Llama-family model directory as one GGUF file for llama.cpp.

The file carries the weights (f32, f16 or q8_0 written here; k-quants by llama.cpp's quantizer),
the tokenizer (:mod:`fastchat_lite.gguf.vocab`), bos/eos/pad ids and the chat template the
model was trained with, minus the ``{% generation %}`` markers that plain Jinja rejects, so
llama.cpp's tools and our llama-cpp worker prompt it exactly as our torch worker does.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.gguf.quantize import DTYPES, QUANT_TYPES, quantize_gguf
from fastchat_lite.gguf.tensors import gguf_tensors
from fastchat_lite.gguf.vocab import GgufVocab, build_vocab
from fastchat_lite.io import atomic_path
from fastchat_lite.jinja_export import chat_template, plain_chat_template, template_for_tokenizer
from fastchat_lite.model_loading import check_model_dir, load_tokenizer

_FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0"}


@dataclass
class ExportReport:
    path: Path
    dtype: str
    quantize: str | None
    size_bytes: int
    tensor_types: Counter[str] = field(default_factory=Counter)
    fallbacks: list[str] = field(default_factory=list)  # "name: wanted X, stored as Y"
    tokenizer: str = ""

    def summary(self) -> str:
        kind = self.quantize or self.dtype
        types = ", ".join(f"{n} {t}" for t, n in sorted(self.tensor_types.items()))
        lines = [
            f"wrote {self.path} ({self.size_bytes / 2**20:.1f} MiB, {kind}; tensors: {types}; "
            f"tokenizer: {self.tokenizer})"
        ]
        if self.fallbacks:
            lines.append(
                f"{len(self.fallbacks)} tensor(s) have rows that do not split into {kind} "
                "blocks and were stored in another type:"
            )
            lines += [f"  {f}" for f in self.fallbacks[:20]]
        return "\n".join(lines)


def llama_hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The architecture numbers llama.cpp reads, from a Llama ``config.json``."""
    if config.get("model_type") not in (
        "llama",
        "mistral",
    ) and "LlamaForCausalLM" not in config.get("architectures", []):
        raise FastChatLiteError(
            f"GGUF export supports Llama-architecture models; this is {config.get('model_type')!r}"
        )
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise FastChatLiteError(
            "GGUF export: Llama models with attention/MLP biases are not supported"
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type not in ("default", "linear"):
        raise FastChatLiteError(f"GGUF export: rope scaling {rope_type!r} is not supported")
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    return {
        "n_vocab": config["vocab_size"],
        "n_ctx": config.get("max_position_embeddings", 2048),
        "n_embd": config["hidden_size"],
        "n_layer": config["num_hidden_layers"],
        "n_ff": config["intermediate_size"],
        "n_head": n_head,
        "n_head_kv": config.get("num_key_value_heads") or n_head,
        "head_dim": head_dim,
        "rms_eps": config.get("rms_norm_eps", 1e-6),
        "rope_theta": rope.get("rope_theta", config.get("rope_theta", 10000.0)),
        "rope_linear_factor": rope.get("factor") if rope_type == "linear" else None,
        "tied": bool(config.get("tie_word_embeddings", False)),
    }


def export_gguf(
    model_dir: str | Path,
    output: str | Path,
    *,
    dtype: str = "f16",
    quantize: str | None = None,
    template: str | None = None,
    threads: int | None = None,
) -> ExportReport:
    """Write ``output``; ``quantize`` (a :data:`QUANT_TYPES` key) runs llama.cpp's quantizer on
    the ``dtype`` export. The file appears only when complete."""
    if dtype not in DTYPES:
        raise FastChatLiteError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if quantize is not None and quantize not in QUANT_TYPES:
        raise FastChatLiteError(
            f"--quantize must be one of {', '.join(QUANT_TYPES)}, not {quantize!r}"
        )
    model_dir = check_model_dir(model_dir)
    output = Path(output)
    hparams = llama_hparams(json.loads((model_dir / "config.json").read_text()))
    tokenizer = load_tokenizer(model_dir)
    vocab = build_vocab(tokenizer, hparams["n_vocab"])
    name = template_for_tokenizer(tokenizer, template)
    jinja = chat_template(name) if name else tokenizer.chat_template
    base = dtype if quantize is None else ("f32" if dtype == "f32" else "f16")
    jinja = plain_chat_template(jinja)
    with atomic_path(output) as target:
        if quantize is None:
            _write(target, model_dir, hparams, vocab, jinja, base)
        else:
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                source = Path(tmp) / "source.gguf"
                _write(source, model_dir, hparams, vocab, jinja, base)
                quantize_gguf(source, target, quantize, threads)
    return _report(output, dtype, quantize, vocab)


def _write(
    path: Path,
    model_dir: Path,
    hparams: dict[str, Any],
    vocab: GgufVocab,
    jinja: str | None,
    dtype: str,
) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    _add_metadata(writer, model_dir.resolve().name, hparams, dtype)
    _add_vocab(writer, vocab)
    if jinja:
        writer.add_chat_template(jinja)
    tensors = list(
        tqdm(gguf_tensors(model_dir, hparams, dtype), desc="converting tensors", unit="tensor")
    )
    for tensor_name, data, kind in tensors:
        raw = gguf.GGMLQuantizationType.Q8_0 if kind == "q8_0" else None
        writer.add_tensor(tensor_name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()


def _add_metadata(writer: Any, name: str, h: dict[str, Any], dtype: str) -> None:
    import gguf

    writer.add_name(name)
    writer.add_file_type(int(gguf.LlamaFileType[_FILE_TYPES[dtype]]))
    writer.add_vocab_size(h["n_vocab"])
    writer.add_context_length(h["n_ctx"])
    writer.add_embedding_length(h["n_embd"])
    writer.add_block_count(h["n_layer"])
    writer.add_feed_forward_length(h["n_ff"])
    writer.add_head_count(h["n_head"])
    writer.add_head_count_kv(h["n_head_kv"])
    writer.add_rope_dimension_count(h["head_dim"])
    if h["head_dim"] * h["n_head"] != h["n_embd"]:
        writer.add_key_length(h["head_dim"])
        writer.add_value_length(h["head_dim"])
    writer.add_layer_norm_rms_eps(h["rms_eps"])
    writer.add_rope_freq_base(h["rope_theta"])
    if h["rope_linear_factor"]:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(h["rope_linear_factor"])


def _add_vocab(writer: Any, vocab: GgufVocab) -> None:
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    for kind, token_id in vocab.special_ids.items():
        getattr(writer, f"add_{kind}_token_id")(token_id)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)


def _report(path: Path, dtype: str, quantize: str | None, vocab: GgufVocab) -> ExportReport:
    import gguf

    reader = gguf.GGUFReader(str(path))
    block = QUANT_TYPES[quantize][1] if quantize else (32 if dtype == "q8_0" else 1)
    report = ExportReport(
        path=path,
        dtype=dtype,
        quantize=quantize,
        size_bytes=path.stat().st_size,
        tokenizer=f"{vocab.model}" + (f" ({vocab.pre})" if vocab.pre else ""),
    )
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name.lower()
        report.tensor_types[kind] += 1
        row = int(tensor.shape[0])
        if len(tensor.shape) > 1 and block > 1 and row % block:
            report.fallbacks.append(f"{tensor.name}: rows of {row}, stored as {kind}")
    del reader  # unmaps the file
    return report
