"""Same conversations, same weights: our trained-token mask and loss equal TRL SFTTrainer's.

TRL gets the chat template we export (``{% generation %}`` around each reply) and
``assistant_only_loss=True``; both normalise over trained tokens. trl comes with the ``bench``
extra (``make install`` installs it), so this test runs everywhere the suite does.
"""

from __future__ import annotations

import pytest

from fastchat_lite.jinja_export import chat_template
from fastchat_lite.masking import IGNORE_INDEX, encode_conversation
from fastchat_lite.messages import to_messages
from train.collate import collate_packed, collate_rows
from train.dataset import encode_sample
from train.loop import loss_sum
from train.synthetic import synthetic_conversations

TEMPLATE = "vicuna_v1.1"
MAX_LENGTH = 512


def _records() -> list[dict]:
    records = synthetic_conversations(5, seed=11, median_words=20, max_words=60)
    records.append(
        {
            "messages": [
                {"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "hello how can you help"},
                {"role": "assistant", "content": "write a python function that adds two numbers"},
                {"role": "user", "content": "USER: ASSISTANT: test"},
                {"role": "assistant", "content": "the loss works"},
            ]
        }
    )
    return records


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from fastchat_lite.model_loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer.chat_template = chat_template(TEMPLATE)
    return tokenizer


@pytest.fixture(scope="module")
def trl_trainer(tiny_model_dir, tokenizer, tmp_path_factory):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from fastchat_lite.model_loading import load_model

    rows = [
        {"messages": [{"role": m.role, "content": m.content} for m in to_messages(r)]}
        for r in _records()
    ]
    args = SFTConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")), use_cpu=True, report_to="none",
        assistant_only_loss=True, max_length=MAX_LENGTH, per_device_train_batch_size=2,
    )  # fmt: skip
    model = load_model(tiny_model_dir, dtype="fp32", attn_implementation="sdpa")
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )


def test_trl_tokenizes_and_masks_exactly_like_us(trl_trainer, tokenizer):
    dataset = trl_trainer.train_dataset
    assert len(dataset) == len(_records())
    for record, theirs in zip(_records(), dataset, strict=True):
        ours = encode_conversation(record, tokenizer, TEMPLATE, MAX_LENGTH)
        assert ours.input_ids == theirs["input_ids"]
        assert [label != IGNORE_INDEX for label in ours.labels] == [
            label != -100 for label in theirs["labels"]
        ]
        assert ours.num_trained > 0


@pytest.mark.parametrize("padding_free", [False, True])
def test_trl_loss_equals_ours_on_the_same_batch(trl_trainer, tokenizer, padding_free):
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    pad = tokenizer.pad_token_id
    collator = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=padding_free)
    features = [
        {"input_ids": f["input_ids"], "labels": f["labels"]} for f in trl_trainer.train_dataset
    ]
    samples = [encode_sample(r, tokenizer, TEMPLATE, MAX_LENGTH) for r in _records()]
    trained = sum(s.num_trained for s in samples)
    model = trl_trainer.model
    with torch.no_grad():
        theirs = trl_trainer.compute_loss(model, dict(collator(features))).item()
        packed = loss_sum(model, collate_packed([samples], pad), "cpu", None).item() / trained
        padded = loss_sum(model, collate_rows([[s] for s in samples], pad), "cpu", None)
    assert theirs == pytest.approx(packed, rel=1e-5)
    assert theirs == pytest.approx(padded.item() / trained, rel=1e-5)


def test_typed_special_token_text_is_the_one_known_difference(trl_trainer, tokenizer):
    """A user typing "</s>": TRL's apply_chat_template turns it into the EOS token, we keep text."""
    record = {
        "messages": [{"role": "user", "content": "a </s> b"}, {"role": "assistant", "content": "c"}]
    }
    ours = encode_conversation(record, tokenizer, TEMPLATE, MAX_LENGTH).input_ids
    theirs = tokenizer.apply_chat_template(record["messages"], tokenize=True, return_dict=True)
    eos = tokenizer.eos_token_id
    assert theirs["input_ids"].count(eos) == ours.count(eos) + 1
