"""GGUF export read back with the gguf package: metadata, vocabulary, chat template, tensors.

What llama.cpp itself makes of the file is tested in test_gguf_llama_cpp.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jinja2
import numpy as np
import pytest
from safetensors.numpy import load_file

from fastchat_lite.cli import main
from fastchat_lite.errors import FastChatLiteError, MissingExtraError
from fastchat_lite.gguf import export_gguf
from fastchat_lite.gguf.tensors import interleave_rotary
from fastchat_lite.jinja_export import chat_template, plain_chat_template
from fastchat_lite.model_loading import load_tokenizer
from fastchat_lite.templates import list_templates

gguf = pytest.importorskip("gguf")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "2+2?"},
    ],
]


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gguf")
    return {
        dtype: export_gguf(tiny_model_dir, out / f"tiny-{dtype}.gguf", dtype=dtype).path
        for dtype in ("f32", "f16", "q8_0")
    }


def _field(reader, key: str):
    field = reader.fields[key]
    if len(field.data) == 1 and field.types[0] != gguf.GGUFValueType.ARRAY:
        value = field.parts[field.data[0]]
        return bytes(value).decode() if field.types[0] == gguf.GGUFValueType.STRING else value[0]
    return [bytes(field.parts[i]).decode() for i in field.data]


def test_metadata_says_what_llama_cpp_needs_to_rebuild_the_model(exported, tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    reader = gguf.GGUFReader(exported["f32"])
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.block_count") == config["num_hidden_layers"]
    assert _field(reader, "llama.embedding_length") == config["hidden_size"]
    assert _field(reader, "llama.attention.head_count_kv") == config["num_key_value_heads"]
    assert _field(reader, "llama.context_length") == config["max_position_embeddings"]
    assert _field(reader, "llama.rope.dimension_count") == config["head_dim"]
    tokenizer = load_tokenizer(tiny_model_dir)
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(reader, "tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    tokens = _field(reader, "tokenizer.ggml.tokens")
    vocab = tokenizer.get_vocab()
    assert len(tokens) == config["vocab_size"]
    assert all(tokens[i] == text for text, i in vocab.items())
    assert len(_field(reader, "tokenizer.ggml.merges")) > 0


@pytest.mark.parametrize("dtype, tolerance", [("f32", 0.0), ("f16", 1e-3), ("q8_0", 2e-2)])
def test_tensors_read_back_equal_the_checkpoint(exported, tiny_model_dir, dtype, tolerance):
    hf = load_file(tiny_model_dir / "model.safetensors")
    config = json.loads((tiny_model_dir / "config.json").read_text())
    reader = gguf.GGUFReader(exported[dtype])
    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors  # tied embeddings: llama.cpp reuses token_embd
    checks = {
        "token_embd.weight": hf["model.embed_tokens.weight"],
        "blk.1.attn_q.weight": interleave_rotary(
            hf["model.layers.1.self_attn.q_proj.weight"], config["num_attention_heads"]
        ),
        "blk.1.attn_k.weight": interleave_rotary(
            hf["model.layers.1.self_attn.k_proj.weight"], config["num_key_value_heads"]
        ),
        "blk.0.ffn_down.weight": hf["model.layers.0.mlp.down_proj.weight"],
        "output_norm.weight": hf["model.norm.weight"],
    }
    for name, expected in checks.items():
        tensor = tensors[name]
        got = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(expected.shape)
        scale = float(np.abs(expected).max())
        assert np.abs(got - expected).max() <= tolerance * scale, name
    assert tensors["output_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32


def test_rotary_interleave_pairs_each_half_row_with_its_partner():
    # 1 head of dim 4: HF rows [x0, x1, y0, y1] (rotate-half) -> llama.cpp [x0, y0, x1, y1].
    weight = np.arange(4, dtype=np.float32)[:, None]
    assert interleave_rotary(weight, n_head=1)[:, 0].tolist() == [0, 2, 1, 3]


def _plain_jinja(template: str, tokenizer, messages) -> str:
    """Render with plain jinja2 (what llama.cpp's tools and llama-cpp-python use)."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
    )


@pytest.mark.parametrize("name", list_templates())
def test_plain_template_renders_like_ours_without_generation_markers(name, tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer.chat_template = chat_template(name)
    plain = plain_chat_template(tokenizer.chat_template)
    assert not re.search(r"\{%-?\s*(end)?generation", plain)
    with pytest.raises(jinja2.TemplateSyntaxError):
        _plain_jinja(tokenizer.chat_template, tokenizer, CONVERSATIONS[0])
    for messages in CONVERSATIONS:
        expected = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        assert _plain_jinja(plain, tokenizer, messages) == expected


def test_embedded_chat_template_renders_what_the_tokenizer_renders(exported, tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    jinja = _field(gguf.GGUFReader(exported["f16"]), "tokenizer.chat_template")
    for messages in CONVERSATIONS:
        expected = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        assert _plain_jinja(jinja, tokenizer, messages) == expected


def test_the_file_appears_only_when_complete(tiny_model_dir, tmp_path, monkeypatch):
    import fastchat_lite.gguf.export as export

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_add_vocab", fail)
    with pytest.raises(RuntimeError):
        export_gguf(tiny_model_dir, tmp_path / "model.gguf")
    assert list(tmp_path.iterdir()) == []


def test_models_llama_cpp_cannot_load_are_refused_with_the_reason(tiny_model_dir, tmp_path):
    model = tmp_path / "gpt2ish"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(FastChatLiteError, match="Llama-architecture"):
        export_gguf(model, tmp_path / "x.gguf")
    with pytest.raises(FastChatLiteError, match="--dtype"):
        export_gguf(tiny_model_dir, tmp_path / "x.gguf", dtype="int3")
    assert not (tmp_path / "x.gguf").exists()


def test_quantizing_without_llama_cpp_says_how_to_get_it(tiny_model_dir, tmp_path, monkeypatch):
    import fastchat_lite.gguf.quantize as quantize

    monkeypatch.setattr(quantize, "quantizer_available", lambda: None)
    with pytest.raises(MissingExtraError, match=r"fastchat-lite\[llamacpp\]"):
        export_gguf(tiny_model_dir, tmp_path / "q.gguf", quantize="q4_K_M")
    assert not (tmp_path / "q.gguf").exists()


def test_export_command_writes_the_file_and_reports_it(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "tiny.gguf"
    assert main(["export", "gguf", str(tiny_model_dir), "-o", str(out), "--dtype", "q8_0"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "q8_0" in printed
    assert gguf.GGUFReader(out).tensors
