"""GgufTokenizer: llama.cpp tokenizing a GGUF export exactly like the HF tokenizer it came from,
so the llama-cpp worker feeds the model the same prompt ids as the torch worker."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLE_TEXTS

pytest.importorskip("llama_cpp")  # CI installs the [llamacpp] extra: a skip there fails

from fastchat_lite.gguf import export_gguf
from fastchat_lite.jinja_export import template_for_tokenizer
from fastchat_lite.model_loading import load_tokenizer
from serve.engine.decoding import IncrementalDetokenizer
from serve.engine.gguf_tokenizer import GgufTokenizer
from serve.engine.prompting import PromptBuilder
from serve.errors import InvalidRequestError
from serve.schemas import ChatMessage

PIECES = [
    *SAMPLE_TEXTS,
    "naïve café", "Ünïcödé", "日本語のテキストです。", "🎉🚀👍🏽", "עברית", "русский текст",
    "e\u0301", "zero\u200bwidth", "\ufeffbom", "for i in range(10):\n\tprint(i)",
    "if (a && b) { return x->y; }", "<html><body>x</body></html>", "SELECT * FROM t;",
    "   ", "\n\n\n", "\t\t", " \n ", "a    b", "trailing   ", "\r\n", "</s>", "<s>",
    "<|im_start|>user\nhi<|im_end|>", "<unk>", "<pad>", "</s></s>", "<s </s>", "<|im_end",
    "1234567890", "3.14159", "!!!???", "'s 've 're", "don't", "I'M", "e.g.,", "",
]  # fmt: skip


def varied_strings(count: int = 300) -> list[str]:
    """Every piece alone, then random joins of 1-4 pieces (fixed seed)."""
    rng = random.Random(0)
    joined = [
        rng.choice(["", " ", "\n", "  "]).join(rng.choices(PIECES, k=rng.randint(1, 4)))
        for _ in range(count - len(PIECES))
    ]
    return [*PIECES, *joined]


@pytest.fixture(scope="session", name="tiny_gguf")
def tiny_gguf_fixture(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test model exported to an f32 GGUF (greedy output comparable with torch);
    test_serve_llama_cpp imports it."""
    out = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return export_gguf(tiny_model_dir, out, dtype="f32").path


@pytest.fixture(scope="module")
def gguf_tokenizer(tiny_gguf: Path):
    tokenizer = GgufTokenizer.from_file(tiny_gguf)
    yield tokenizer
    tokenizer.close()


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_model_dir: Path):
    return load_tokenizer(tiny_model_dir)


@pytest.mark.parametrize("split_special_tokens", [False, True])
def test_ids_and_offsets_equal_the_hf_tokenizers_on_varied_text(
    gguf_tokenizer, hf_tokenizer, split_special_tokens
):
    for text in varied_strings():
        args = {"add_special_tokens": False, "split_special_tokens": split_special_tokens}
        ours = gguf_tokenizer(text, return_offsets_mapping=True, **args)
        theirs = hf_tokenizer(text, return_offsets_mapping=True, **args)
        assert ours["input_ids"] == theirs["input_ids"], text
        assert ours["offset_mapping"] == [tuple(o) for o in theirs["offset_mapping"]], text


def test_typed_special_token_text_is_parsed_only_when_asked(gguf_tokenizer):
    eos = gguf_tokenizer.eos_token_id
    assert eos in gguf_tokenizer("a</s>", add_special_tokens=False)["input_ids"]
    typed = gguf_tokenizer("a</s>", add_special_tokens=False, split_special_tokens=True)
    assert eos not in typed["input_ids"]


def test_decode_equals_hf_with_and_without_special_tokens(gguf_tokenizer, hf_tokenizer):
    for text in varied_strings(100):
        ids = hf_tokenizer(text, add_special_tokens=True)["input_ids"]
        for skip in (False, True):
            assert gguf_tokenizer.decode(ids, skip_special_tokens=skip) == hf_tokenizer.decode(
                ids, skip_special_tokens=skip
            ), text


def test_streamed_text_never_splits_a_multibyte_character(gguf_tokenizer, hf_tokenizer):
    text = "Emoji 🎉🚀👍🏽 and 日本語 and e\u0301"
    ids = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    streams = []
    for tokenizer in (gguf_tokenizer, hf_tokenizer):
        detokenizer = IncrementalDetokenizer(tokenizer, [])
        streams.append([detokenizer.add(i) for i in ids])
    assert streams[0] == streams[1]
    assert "".join(streams[0]) == text and not any("\ufffd" in d for d in streams[0])


def test_special_tokens_vocab_and_template_come_from_the_gguf(gguf_tokenizer, hf_tokenizer):
    g, h = gguf_tokenizer, hf_tokenizer
    assert (g.bos_token, g.eos_token, g.unk_token_id, g.pad_token_id) == (
        h.bos_token, h.eos_token, h.unk_token_id, h.pad_token_id,
    )  # fmt: skip
    assert (g.bos_token_id, g.eos_token_id) == (h.bos_token_id, h.eos_token_id)
    assert g.get_vocab() == h.get_vocab()
    assert {i: t.content for i, t in g.added_tokens_decoder.items()} == {
        i: t.content for i, t in h.added_tokens_decoder.items()
    }
    assert g.convert_tokens_to_ids("<|im_end|>") == h.convert_tokens_to_ids("<|im_end|>")
    assert g.convert_tokens_to_ids("no such token") == h.unk_token_id
    assert template_for_tokenizer(g) == template_for_tokenizer(h) == "vicuna_v1.1"


CONVERSATIONS = [
    [{"role": "user", "content": "Hello! How can I help you today?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好，世界！"}],
    [
        {"role": "user", "content": "def add(a, b):"},
        {"role": "assistant", "content": "return a + b"},
        {"role": "user", "content": "Emoji test 🎉 and   spaces\n\n"},
    ],
    [{"role": "user", "content": "stop here </s> <s> USER: ASSISTANT: <|im_start|>"}],
    [
        {"role": "system", "content": "</s>"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "typed </s> in a reply"},
        {"role": "user", "content": "and again"},
    ],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_chat_prompt_ids_equal_the_torch_workers_with_one_bos(
    gguf_tokenizer, hf_tokenizer, conversation
):
    messages = [ChatMessage(**m) for m in conversation]
    torch_ids = PromptBuilder(hf_tokenizer, template_for_tokenizer(hf_tokenizer)).prompt_ids(
        messages
    )
    ours = PromptBuilder(gguf_tokenizer, template_for_tokenizer(gguf_tokenizer))
    assert ours.prompt_ids(messages) == torch_ids
    assert torch_ids[0] == gguf_tokenizer.bos_token_id
    assert torch_ids.count(gguf_tokenizer.bos_token_id) == 1
    raw = "The quick brown </s> fox"
    assert ours.prompt_ids(raw) == PromptBuilder(hf_tokenizer, None).prompt_ids(raw)


CHATML = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' and not loop.first %}"
    "{{ raise_exception('System message must come first') }}{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def foreign_template_pair(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(GGUF tokenizer, HF tokenizer) of the tiny model re-saved with a ChatML template that is
    not one of ours, so both fall back to rendering the model's own Jinja."""
    model_dir = tmp_path_factory.mktemp("chatml") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    hf = load_tokenizer(model_dir)
    hf.chat_template = CHATML
    hf.save_pretrained(model_dir)
    hf = load_tokenizer(model_dir)
    gguf = GgufTokenizer.from_file(export_gguf(model_dir, model_dir / "m.gguf", dtype="f32").path)
    yield gguf, hf
    gguf.close()


def test_a_foreign_chat_template_renders_and_tokenizes_as_transformers_does(
    foreign_template_pair,
):
    gguf, hf = foreign_template_pair
    assert gguf.chat_template == CHATML
    assert template_for_tokenizer(gguf) is template_for_tokenizer(hf) is None
    for conversation in CONVERSATIONS:
        messages = [ChatMessage(**m) for m in conversation]
        ids = PromptBuilder(gguf, None).prompt_ids(messages)
        assert ids == PromptBuilder(hf, None).prompt_ids(messages)
        assert ids[0] == gguf.bos_token_id  # the template's {{ bos_token }}, nothing added
    rendered = gguf.apply_chat_template(
        CONVERSATIONS[0], add_generation_prompt=True, tokenize=False
    )
    assert rendered.startswith("<s><|im_start|>user\n") and rendered.endswith("assistant\n")


def test_a_foreign_templates_raise_exception_is_a_400(foreign_template_pair):
    gguf, _ = foreign_template_pair
    late_system = [ChatMessage(role="user", content="a"), ChatMessage(role="system", content="b")]
    with pytest.raises(InvalidRequestError, match="System message must come first"):
        PromptBuilder(gguf, None).prompt_ids(late_system)
