from __future__ import annotations

import pytest
from jinja2.exceptions import TemplateError

from fastchat_lite import (
    ConversationError,
    UnknownTemplateError,
    chat_template,
    get_template,
    list_templates,
    render_prompt,
    to_messages,
)
from fastchat_lite.messages import to_openai
from fastchat_lite.templates import VICUNA_SYSTEM

CONV = [
    {"from": "human", "value": "Who are you?"},
    {"from": "gpt", "value": "I am Vicuna."},
    {"from": "human", "value": "Say hi"},
    {"from": "gpt", "value": "Hi!"},
]


def test_vicuna_renders_fastchat_exact_format():
    text = render_prompt(to_messages(CONV), "vicuna_v1.1", bos_token="<s>", eos_token="</s>")
    assert text == (
        f"<s>{VICUNA_SYSTEM} USER: Who are you? ASSISTANT: I am Vicuna.</s>"
        "USER: Say hi ASSISTANT: Hi!</s>"
    )


def test_vicuna_generation_prompt_ends_with_assistant_colon():
    text = render_prompt(
        to_messages(CONV[:1]), "vicuna_v1.1", eos_token="</s>", add_generation_prompt=True
    )
    assert text == f"{VICUNA_SYSTEM} USER: Who are you? ASSISTANT:"


def test_llama2_folds_first_user_turn_into_system_block():
    msgs = [{"role": "system", "content": "Be brief."}, *to_messages(CONV)]
    text = render_prompt(to_messages(msgs), "llama-2", bos_token="<s>", eos_token="</s>")
    assert text == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWho are you? [/INST] I am Vicuna. </s><s>"
        "[INST] Say hi [/INST] Hi! </s><s>"
    )


def test_chatml_uses_im_end_as_end_of_turn():
    text = render_prompt(to_messages(CONV[:2]), "chatml", add_generation_prompt=False)
    assert text == (
        "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\nI am Vicuna.<|im_end|>\n"
    )
    assert get_template("chatml").end_of_turn("</s>") == "<|im_end|>"


def test_registry_has_the_required_templates_and_names_unknown_ones():
    assert {"vicuna_v1.1", "alpaca", "chatml", "llama-2"} <= set(list_templates())
    with pytest.raises(UnknownTemplateError, match="known templates"):
        get_template("nope")


@pytest.mark.parametrize("name", ["vicuna_v1.1", "alpaca", "chatml", "llama-2"])
@pytest.mark.parametrize("with_system", [False, True])
@pytest.mark.parametrize("gen", [False, True])
def test_jinja_export_renders_the_same_text_as_python(name, with_system, gen):
    convs = [CONV[:1] if gen else CONV, CONV[:3] if gen else CONV[:2]]
    from transformers.utils.chat_template_utils import _compile_jinja_template

    compiled = _compile_jinja_template(chat_template(name))
    for conv in convs:
        messages = to_messages(conv)
        if with_system:
            messages = [to_messages([{"role": "system", "content": "Sys <b>x</b>"}])[0], *messages]
        openai = to_openai(messages)
        expected = render_prompt(
            messages, name, bos_token="<s>", eos_token="</s>", add_generation_prompt=gen
        )
        got = compiled.render(
            messages=openai, bos_token="<s>", eos_token="</s>", add_generation_prompt=gen
        )
        assert got == expected


def test_bad_alternation_is_a_conversation_error_in_both_renderers():
    from transformers.utils.chat_template_utils import _compile_jinja_template

    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(ConversationError, match="alternate"):
        render_prompt(to_messages(bad), "vicuna_v1.1")
    with pytest.raises(TemplateError):
        _compile_jinja_template(chat_template("vicuna_v1.1")).render(
            messages=bad, bos_token="<s>", eos_token="</s>", add_generation_prompt=False
        )


def test_unknown_role_is_rejected_with_its_index():
    with pytest.raises(ConversationError, match="turn 1: unknown role 'robot'"):
        to_messages([{"from": "human", "value": "x"}, {"from": "robot", "value": "y"}])


def test_reply_lead_is_the_template_text_between_generation_prompt_and_reply():
    assert get_template("vicuna_v1.1").reply_lead == " "
    assert get_template("llama-2").reply_lead == " "
    assert get_template("chatml").reply_lead == ""
    assert get_template("alpaca").reply_lead == ""
