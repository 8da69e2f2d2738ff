"""A Hugging Face fast tokenizer as GGUF tokenizer metadata llama.cpp tokenizes exactly like it.

Two families cover the Llama-style models the trainer produces:

- byte-level BPE (GPT-2 / Llama-3 style): ``tokenizer.ggml.model = "gpt2"`` with the merges and
  a named pre-tokenizer. llama.cpp hard-codes each pre-tokenizer's split regex under a name, so
  the name is chosen from the tokenizer's own pre-tokenizer config (llama.cpp's converter instead
  hashes the vocabulary of known checkpoints and rejects any locally trained tokenizer);
- SentencePiece-style BPE with byte fallback (Llama-2 / Mistral style, ``▁`` for spaces):
  ``tokenizer.ggml.model = "llama"``, whose merge order comes from token scores, so each token
  scores minus the rank of the merge that creates it.

Anything else is refused with the reason instead of being exported to tokenize differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastchat_lite.errors import FastChatLiteError

# gguf.TokenType values (kept numeric so this module imports without the gguf package).
NORMAL, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 3, 4, 5, 6

GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass
class GgufVocab:
    """Everything llama.cpp needs to tokenize and detokenize like the HF tokenizer."""

    model: str  # "gpt2" or "llama"
    pre: str | None
    tokens: list[str]
    token_types: list[int]
    merges: list[str] = field(default_factory=list)
    scores: list[float] | None = None
    special_ids: dict[str, int] = field(default_factory=dict)  # bos/eos/unk/pad -> id
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None  # SentencePiece-style: "▁" put before the text


def build_vocab(tokenizer: Any, n_vocab: int) -> GgufVocab:
    """The GGUF vocabulary of ``tokenizer`` padded to the model's ``n_vocab`` embedding rows."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise FastChatLiteError(
            f"GGUF export supports BPE tokenizers; this one is {model.get('type')!r}"
        )
    vocab: dict[str, int] = tokenizer.get_vocab()
    if len(vocab) > n_vocab:
        raise FastChatLiteError(
            f"the tokenizer has {len(vocab)} tokens but the model only {n_vocab} embedding rows"
        )
    if model.get("byte_fallback"):
        out = _sentencepiece_vocab(spec, vocab, n_vocab)
    else:
        out = _byte_level_vocab(spec, vocab, n_vocab)
    _mark_added_tokens(out, tokenizer)
    out.special_ids = {
        name: token_id
        for name in ("bos", "eos", "unk", "pad")
        if (token_id := getattr(tokenizer, f"{name}_token_id", None)) is not None
    }
    out.add_bos, out.add_eos = _added_specials(tokenizer)
    return out


def _ordered(vocab: dict[str, int], n_vocab: int) -> tuple[list[str], list[int]]:
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [UNUSED] * n_vocab
    for text, token_id in vocab.items():
        tokens[token_id], types[token_id] = text, NORMAL
    return tokens, types


def _merges(model: dict[str, Any]) -> list[str]:
    # tokenizers >= 0.20 saves merges as pairs, older versions as "a b" strings.
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]


def _byte_level_vocab(spec: dict[str, Any], vocab: dict[str, int], n_vocab: int) -> GgufVocab:
    tokens, types = _ordered(vocab, n_vocab)
    return GgufVocab(
        model="gpt2",
        pre=_pre_tokenizer_name(spec.get("pre_tokenizer")),
        tokens=tokens,
        token_types=types,
        merges=_merges(spec["model"]),
    )


def _pre_tokenizer_name(pre: dict[str, Any] | None) -> str:
    """llama.cpp's name for the split regex this pre-tokenizer applies."""
    steps = pre.get("pretokenizers", [pre]) if pre and pre.get("type") == "Sequence" else [pre]
    splits = [s for s in steps if s and s.get("type") == "Split"]
    byte_level = [s for s in steps if s and s.get("type") == "ByteLevel"]
    if not splits and byte_level and byte_level[0].get("use_regex", True):
        if byte_level[0].get("add_prefix_space"):
            raise FastChatLiteError(
                "GGUF export: a ByteLevel pre-tokenizer with add_prefix_space=True has no "
                "llama.cpp equivalent"
            )
        return "gpt-2"
    if len(splits) == 1 and byte_level and not byte_level[0].get("use_regex", True):
        pattern = (splits[0].get("pattern") or {}).get("Regex")
        if pattern == LLAMA3_SPLIT:
            return "llama-bpe"
        if pattern == GPT2_SPLIT:
            return "gpt-2"
    raise FastChatLiteError(
        "GGUF export: llama.cpp has no pre-tokenizer matching this tokenizer's "
        f"{json.dumps(pre)[:300]}; supported: GPT-2 byte-level and Llama-3 splits"
    )


def _sentencepiece_vocab(spec: dict[str, Any], vocab: dict[str, int], n_vocab: int) -> GgufVocab:
    _check_metaspace(spec)
    add_space_prefix = _prepends_space(spec)
    tokens, types = _ordered(vocab, n_vocab)
    scores = [0.0] * n_vocab
    for rank, merge in enumerate(_merges(spec["model"])):
        left, right = merge.split(" ", 1)
        merged = vocab.get(left + right)
        if merged is not None and scores[merged] == 0.0:
            scores[merged] = -float(rank + 1)  # earlier merges win, as in BPE
    for token_id, text in enumerate(tokens):
        if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            types[token_id] = BYTE
    return GgufVocab(
        model="llama",
        pre=None,
        tokens=tokens,
        token_types=types,
        scores=scores,
        add_space_prefix=add_space_prefix,
    )


def _check_metaspace(spec: dict[str, Any]) -> None:
    """SentencePiece-style means spaces become ``▁`` and nothing else rewrites the text."""
    text = json.dumps([spec.get("normalizer"), spec.get("pre_tokenizer")])
    if "\u2581" not in text and "\\u2581" not in text:
        raise FastChatLiteError(
            "GGUF export: a byte-fallback BPE tokenizer is exported as SentencePiece-style, "
            "but this one does not turn spaces into '\u2581'"
        )


def _prepends_space(spec: dict[str, Any]) -> bool:
    """Whether the text gets a leading "▁" (Llama-2's Prepend normalizer, or a Metaspace
    pre-tokenizer with a prepend scheme): llama.cpp's ``add_space_prefix``."""

    def steps(node: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
        if not node:
            return []
        return node.get(key, [node]) if node.get("type") == "Sequence" else [node]

    for step in steps(spec.get("normalizer"), "normalizers"):
        if step.get("type") == "Prepend" and step.get("prepend") == "\u2581":
            return True
    for step in steps(spec.get("pre_tokenizer"), "pretokenizers"):
        if step.get("type") == "Metaspace":
            return step.get("prepend_scheme", "always") != "never"
    return False


def _mark_added_tokens(out: GgufVocab, tokenizer: Any) -> None:
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if token_id < len(out.token_types):
            out.token_types[token_id] = CONTROL if added.special else USER_DEFINED


def _added_specials(tokenizer: Any) -> tuple[bool, bool]:
    """Whether encoding with special tokens adds BOS in front / EOS at the end."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = len(full) > len(plain) and bos is not None and full[0] == bos
    add_eos = len(full) > len(plain) and eos is not None and full[-1] == eos
    return add_bos, add_eos
