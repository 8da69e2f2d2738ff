"""What llama.cpp makes of our GGUF export: the same tokens, the same logits, the same greedy
text as transformers, and working quantized files (llama-cpp-python is the [llamacpp] extra,
which `make install` builds)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from fastchat_lite.gguf import export_gguf
from fastchat_lite.model_loading import load_model, load_tokenizer

llama_cpp = pytest.importorskip("llama_cpp")

FRAGMENTS = [
    "Hello", " world", "!", "  ", "\n", "\n\n", "\t", "def", " add(a, b):", "    return a + b",
    "你好", "，世界", "🎉", "🚀👍", "café", " naïve", "Ünïcödé", "1234567890", " 3.14", "---",
    "```python", "```", "<s>", "</s>", "<|im_start|>", "USER:", " ASSISTANT:", "### Instruction:",
    "It's", " we'll", " they're", "'m", "   trailing   ", "a", "Z", "%$#@", " (x)", "{json: 1}",
]  # fmt: skip


def varied_strings(n: int = 300) -> list[str]:
    rng = random.Random(17)
    return ["".join(rng.choices(FRAGMENTS, k=rng.randint(1, 8))) for _ in range(n)]


@pytest.fixture(scope="module")
def gguf_files(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gguf-llama")
    files = {
        d: export_gguf(tiny_model_dir, out / f"{d}.gguf", dtype=d).path for d in ("f32", "f16")
    }
    files["q8_0"] = export_gguf(tiny_model_dir, out / "q8_0.gguf", dtype="q8_0").path
    return files


def _llama(path: Path, **kwargs):
    return llama_cpp.Llama(str(path), n_ctx=512, n_threads=1, verbose=False, **kwargs)


def test_llama_cpp_tokenizes_exactly_like_the_hf_tokenizer(gguf_files, tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    llm = _llama(gguf_files["f16"], vocab_only=True)
    for text in varied_strings():
        expected = tokenizer(text, add_special_tokens=False, split_special_tokens=True)
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == expected["input_ids"]
        with_specials = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == with_specials
        ids = expected["input_ids"]
        assert llm.detokenize(ids).decode() == tokenizer.decode(ids)


@pytest.mark.parametrize("dtype, tolerance", [("f32", 1e-3), ("f16", 5e-3), ("q8_0", 5e-2)])
def test_logits_and_greedy_tokens_match_transformers(gguf_files, tiny_model_dir, dtype, tolerance):
    tokenizer = load_tokenizer(tiny_model_dir)
    model = load_model(tiny_model_dir, dtype="fp32").eval()
    ids = tokenizer("USER: Hello! How can I help you today? ASSISTANT:")["input_ids"]
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0].numpy()
        greedy = model.generate(
            torch.tensor([ids]), max_new_tokens=20, do_sample=False, min_new_tokens=20
        )[0, len(ids) :].tolist()
    llm = _llama(gguf_files[dtype], logits_all=True)
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids)])
    assert np.abs(logits - reference).max() <= tolerance * np.abs(reference).max()
    assert (logits.argmax(-1) == reference.argmax(-1)).all()
    llm.reset()
    generated = []
    for token in llm.generate(ids, temp=0.0):
        generated.append(token)
        if len(generated) == 20:
            break
    assert generated == greedy


@pytest.mark.parametrize("kind, expected_type", [("q4_0", "q4_0"), ("q4_K_M", "q5_0")])
def test_quantized_files_load_generate_and_report_fallbacks(
    tiny_model_dir, tmp_path, kind, expected_type
):
    report = export_gguf(tiny_model_dir, tmp_path / f"{kind}.gguf", quantize=kind)
    assert report.tensor_types[expected_type] > 0
    # The tiny model's 64-wide rows do not split into 256-blocks: every k-quant falls back.
    assert bool(report.fallbacks) == kind.endswith("_K_M")
    assert report.size_bytes < (tmp_path / f"{kind}.gguf").stat().st_size + 1
    llm = _llama(report.path)
    out = llm.create_completion("Hello", max_tokens=8, temperature=0)
    assert out["usage"]["completion_tokens"] > 0


@pytest.fixture(scope="module")
def sentencepiece_style_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama-2-style tokenizer (byte-fallback BPE, spaces as "▁") on a tiny random Llama."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    specials = ["<unk>", "<s>", "</s>", *(f"<0x{i:02X}>" for i in range(256))]
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=specials, show_progress=False)
    backend.train_from_iterator(varied_strings(200), trainer)
    out = tmp_path_factory.mktemp("spm-model")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def test_sentencepiece_style_tokenizers_export_with_exact_parity(
    sentencepiece_style_model, tmp_path
):
    report = export_gguf(sentencepiece_style_model, tmp_path / "spm.gguf", dtype="f16")
    assert report.tokenizer == "llama"
    tokenizer = load_tokenizer(sentencepiece_style_model)
    llm = _llama(report.path, vocab_only=True)
    for text in varied_strings():
        expected = tokenizer(text, add_special_tokens=False, split_special_tokens=True)
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == expected["input_ids"]
