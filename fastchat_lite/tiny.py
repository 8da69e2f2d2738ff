"""Build small models from scratch: a byte-level BPE tokenizer and a random-init Llama.

Used by the quickstart (a model that learns its identity on a laptop CPU) and by every test
fixture, so tests save and load through the real ``from_pretrained`` paths without a download.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastchat_lite.jinja_export import chat_template
from fastchat_lite.messages import to_messages
from fastchat_lite.templates import DEFAULT_TEMPLATE

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>")


@dataclass
class TinyModelConfig:
    """Shape of a from-scratch model; defaults train to a visible result in minutes on 2 cores."""

    vocab_size: int = field(default=2048, metadata={"help": "BPE vocabulary size"})
    hidden_size: int = field(default=256, metadata={"help": "model width"})
    intermediate_size: int = field(default=688, metadata={"help": "MLP width"})
    num_hidden_layers: int = field(default=4, metadata={"help": "decoder layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "attention heads"})
    num_key_value_heads: int = field(default=2, metadata={"help": "KV heads (GQA)"})
    max_position_embeddings: int = field(default=2048, metadata={"help": "context length"})
    template: str = field(default=DEFAULT_TEMPLATE, metadata={"help": "chat template to set"})
    seed: int = field(default=0, metadata={"help": "init seed"})


def texts_of(records: Iterable[Any]) -> Iterator[str]:
    """Every turn's text of ShareGPT/OpenAI records (the tokenizer's training corpus)."""
    for record in records:
        for message in to_messages(record):
            yield message.content


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 2048,
    template: str = DEFAULT_TEMPLATE,
    extra_texts: Iterable[str] = (),
) -> Any:
    """Train a byte-level BPE tokenizer locally and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from fastchat_lite.templates import get_template

    tpl = get_template(template)
    # The template's own words ("USER:", "ASSISTANT:") are part of every sample.
    scaffold = [tpl.system_message, tpl.user_prefix, tpl.assistant_prefix, tpl.generation_prompt]
    backend = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def corpus() -> Iterator[str]:
        yield from scaffold * 50
        yield from extra_texts
        yield from texts

    backend.train_from_iterator(corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = chat_template(template)
    return tokenizer


def init_llama(tokenizer: Any, config: TinyModelConfig) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` sized by ``config`` for ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(model_config)


def build_tiny_model(
    out_dir: str | Path, texts: Iterable[str], config: TinyModelConfig | None = None
) -> Path:
    """Train a tokenizer on ``texts``, init a Llama for it, save both to ``out_dir``."""
    config = config or TinyModelConfig()
    tokenizer = train_tokenizer(texts, config.vocab_size, config.template)
    model = init_llama(tokenizer, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
