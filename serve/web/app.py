"""The Gradio page: controls wired to the callbacks of :mod:`serve.web.chat` and
:mod:`serve.web.arena`.

:func:`build_demo` receives its client, so tests build the same page on a fake client and a
real browser test drives it against a real controller. Per-session state lives in
``gr.State``; the module holds no server state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from serve.config import DEFAULT_TEMPERATURE, MAX_INPUT_CHARS
from serve.web.arena import (
    VOTES,
    add_pair_turn,
    check_pair_turn,
    record_vote,
    refresh_pair,
    stream_pair,
)
from serve.web.chat import (
    ChatClient,
    WebLimits,
    add_user_turn,
    check_can_regenerate,
    export_conversation,
    pop_last_reply,
    refresh_models,
    sampling_params,
    stream_reply,
    validate_message,
)

TITLE = "fastchat-lite chat"


@dataclass
class Params:
    """The shared Parameters panel, created unrendered so both tabs can read it."""

    panel: gr.Accordion
    system: gr.Textbox
    temperature: gr.Slider
    top_p: gr.Slider
    max_tokens: gr.Slider

    def inputs(self) -> list[gr.components.Component]:
        return [self.system, self.temperature, self.top_p, self.max_tokens]


def _params(limits: WebLimits) -> Params:
    with gr.Accordion("Parameters", open=False, elem_id="fcl-params", render=False) as panel:
        system = gr.Textbox(
            label="System prompt",
            placeholder="Optional: instructions the model sees before the conversation",
            lines=2,
            elem_id="fcl-system",
        )
        with gr.Row():
            temperature = gr.Slider(
                0.0,
                2.0,
                value=DEFAULT_TEMPERATURE,
                step=0.05,
                label="Temperature",
                elem_id="fcl-temperature",
            )
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top p", elem_id="fcl-top-p")
            max_tokens = gr.Slider(
                16, limits.max_tokens, value=256, step=16, label="Max new tokens",
                elem_id="fcl-max-tokens",
            )  # fmt: skip
    return Params(panel, system, temperature, top_p, max_tokens)


def _chatbot(label: str, elem_id: str, height: int) -> gr.Chatbot:
    return gr.Chatbot(
        label=label,
        elem_id=elem_id,
        height=height,
        sanitize_html=True,  # second line of defence behind web_render's escaping
        allow_tags=False,
        render_markdown=True,
        buttons=["copy"],
        feedback_options=None,
    )


def _model_row(label: str, elem_id: str) -> tuple[gr.Dropdown, gr.Button]:
    with gr.Row():
        model = gr.Dropdown(
            label=label, choices=[], value=None, scale=4, elem_id=elem_id, interactive=True
        )
        refresh = gr.Button("↻ Refresh", scale=0, min_width=120, size="sm", elem_id=elem_id + "-r")
    return model, refresh


def _input_row(placeholder: str, prefix: str, send_label: str):
    with gr.Row():
        textbox = gr.Textbox(
            show_label=False,
            placeholder=placeholder,
            max_lines=8,
            scale=6,
            elem_id=prefix + "input",
        )
        send = gr.Button(send_label, variant="primary", scale=1, elem_id=prefix + "send")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id=prefix + "stop")
    return textbox, send, stop


def build_chat_tab(
    client: ChatClient, limits: WebLimits, params: Params, export_dir: Path | None
) -> tuple[gr.Dropdown, gr.Markdown, Any]:
    """Single-model chat; returns (dropdown, status, refresh callback) for the page load."""
    history = gr.State([])
    model, refresh = _model_row("Model", "fcl-model")
    status = gr.Markdown("Loading models…", elem_id="fcl-status")
    chatbot = _chatbot("Conversation", "fcl-chatbot", 460)
    textbox, send, stop = _input_row(
        f"Message (up to {limits.max_input_chars} characters, Enter to send)", "fcl-", "Send"
    )
    with gr.Row():
        regenerate = gr.Button("Regenerate", elem_id="fcl-regenerate")
        clear = gr.Button("Clear", elem_id="fcl-clear")
        export = gr.Button("Export JSON", elem_id="fcl-export")
    export_file = gr.File(label="Conversation (ShareGPT JSON)", visible=False, elem_id="fcl-file")

    async def refresh_fn(current: str | None):
        return await refresh_models(client, current)

    def submit_fn(text: str, model_name: str | None, turns: list):
        return add_user_turn(text, model_name, turns, limits)

    async def reply_fn(model_name, system_text, temp, p, tokens, turns):
        sampling = sampling_params(temp, p, tokens, limits)
        async for update in stream_reply(client, model_name, system_text, sampling, turns):
            yield update

    def export_fn(system_text: str, turns: list):
        return gr.update(value=export_conversation(system_text, turns, export_dir), visible=True)

    reply_inputs = [model, *params.inputs(), history]
    outputs = [history, chatbot]
    generations = []
    # Each chain starts with a check that has no outputs: its gr.Error is a toast, instead of
    # an error overlay hiding the chat and the text being typed.
    for trigger in (textbox.submit, send.click):
        event = trigger(lambda text, name: validate_message(text, name, limits), [textbox, model])
        event = event.success(submit_fn, [textbox, model, history], [textbox, *outputs])
        generations.append(event.success(reply_fn, reply_inputs, outputs))
    regen = regenerate.click(check_can_regenerate, [history])
    regen = regen.success(pop_last_reply, [history], outputs)
    generations.append(regen.success(reply_fn, reply_inputs, outputs))
    stop.click(None, None, None, cancels=generations)
    for clear_event in (clear.click, chatbot.clear):  # the button and the chatbot's own icon
        clear_event(
            lambda: ([], [], gr.update(value=None, visible=False)),
            None,
            [history, chatbot, export_file],
            cancels=generations,
        )
    export.click(export_fn, [params.system, history], [export_file])
    refresh.click(refresh_fn, [model], [model, status])
    return model, status, refresh_fn


def _vote_controls(
    vote_file: str | Path | None,
    pair: gr.State,
    system: gr.Textbox,
    history_a: gr.State,
    history_b: gr.State,
) -> gr.Markdown:
    """The vote buttons (hidden without --vote-file) and the line that confirms a vote."""
    with gr.Row(visible=vote_file is not None):
        buttons = {k: gr.Button(label, elem_id=f"fcl-vote-{k}") for k, label in VOTES.items()}
    status = gr.Markdown("" if vote_file else "Votes are off (start with `--vote-file FILE`).")
    for vote, button in buttons.items():
        button.click(
            lambda pair_state, system_text, turns_a, turns_b, vote=vote: record_vote(
                vote_file, vote, pair_state, system_text, turns_a, turns_b
            ),
            [pair, system, history_a, history_b],
            [pair, status],
        )
    return status


def build_arena_tab(
    client: ChatClient, limits: WebLimits, params: Params, vote_file: str | Path | None
) -> tuple[list[gr.Dropdown], Any]:
    """Two models side by side; returns the dropdowns and their refresh callback."""
    history_a, history_b = gr.State([]), gr.State([])
    pair = gr.State({"models": None, "voted": False})
    with gr.Row():
        with gr.Column():
            model_a, refresh_a = _model_row("Model A", "fcl-model-a")
            chatbot_a = _chatbot("A", "fcl-chatbot-a", 400)
        with gr.Column():
            model_b, refresh_b = _model_row("Model B", "fcl-model-b")
            chatbot_b = _chatbot("B", "fcl-chatbot-b", 400)
    textbox, send, stop = _input_row(
        "One prompt for both models (Enter to send)", "fcl-arena-", "Send to both"
    )
    vote_status = _vote_controls(vote_file, pair, params.system, history_a, history_b)
    clear = gr.Button("Clear both", elem_id="fcl-arena-clear")

    async def refresh_fn(current_a: str | None, current_b: str | None):
        return await refresh_pair(client, current_a, current_b)

    def submit_fn(text, name_a, name_b, turns_a, turns_b, pair_state):
        return add_pair_turn(text, name_a, name_b, turns_a, turns_b, pair_state, limits)

    async def reply_fn(pair_state, system_text, temp, p, tokens, turns_a, turns_b):
        sampling = sampling_params(temp, p, tokens, limits)
        async for update in stream_pair(
            client, pair_state, system_text, sampling, turns_a, turns_b
        ):
            yield update

    outputs = [history_a, chatbot_a, history_b, chatbot_b]
    generations = []
    submit_inputs = [textbox, model_a, model_b, history_a, history_b, pair]
    for trigger in (textbox.submit, send.click):
        event = trigger(lambda *values: check_pair_turn(*values, limits), submit_inputs)
        event = event.success(
            submit_fn, submit_inputs, [textbox, history_a, chatbot_a, history_b, chatbot_b, pair]
        )
        reply_inputs = [pair, *params.inputs(), history_a, history_b]
        generations.append(event.success(reply_fn, reply_inputs, outputs))
    stop.click(None, None, None, cancels=generations)
    for clear_event in (clear.click, chatbot_a.clear, chatbot_b.clear):
        clear_event(
            lambda: ([], [], [], [], {"models": None, "voted": False}, ""),
            None,
            [*outputs, pair, vote_status],
            cancels=generations,
        )
    for refresh in (refresh_a, refresh_b):
        refresh.click(refresh_fn, [model_a, model_b], [model_a, model_b])
    return [model_a, model_b], refresh_fn


def build_demo(
    client: ChatClient,
    *,
    max_input_chars: int = MAX_INPUT_CHARS,
    export_dir: Path | None = None,
    vote_file: str | Path | None = None,
    title: str = TITLE,
) -> gr.Blocks:
    """The whole page; call ``.queue().launch(...)`` on the result (see :mod:`serve.web.cli`)."""
    limits = WebLimits(max_input_chars=max_input_chars)
    with gr.Blocks(title=title, analytics_enabled=False, fill_height=True) as demo:
        gr.Markdown(f"## {title}")
        params = _params(limits)
        with gr.Tabs():
            with gr.Tab("Chat", elem_id="fcl-tab-chat"):
                model, status, refresh_chat = build_chat_tab(client, limits, params, export_dir)
            with gr.Tab("Side by side", elem_id="fcl-tab-arena"):
                pair_models, refresh_pair = build_arena_tab(client, limits, params, vote_file)
        params.panel.render()
        demo.load(refresh_chat, [model], [model, status])
        demo.load(refresh_pair, pair_models, pair_models)
    return demo
