"""The Gradio page: controls wired to the callbacks of :mod:`serve.web_chat`.

:func:`build_demo` receives its client, so tests build the same page on a fake client and a
real browser test drives it against a real controller. Per-session state is a ``gr.State``;
the module holds no server state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from serve.web_chat import (
    ChatClient,
    WebLimits,
    add_user_turn,
    export_conversation,
    pop_last_reply,
    refresh_models,
    sampling_params,
    stream_reply,
)

TITLE = "fastchat-lite chat"
CSS = """
#fcl-chatbot { flex-grow: 1; }
footer { display: none !important; }
"""


def _sampling_controls(limits: WebLimits) -> tuple[gr.Textbox, gr.Slider, gr.Slider, gr.Slider]:
    with gr.Accordion("Parameters", open=False, elem_id="fcl-params"):
        system = gr.Textbox(
            label="System prompt",
            placeholder="Optional: instructions the model sees before the conversation",
            lines=2,
            elem_id="fcl-system",
        )
        with gr.Row():
            temperature = gr.Slider(
                0.0, 2.0, value=0.7, step=0.05, label="Temperature", elem_id="fcl-temperature"
            )
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top p", elem_id="fcl-top-p")
            max_tokens = gr.Slider(
                16, limits.max_tokens, value=256, step=16, label="Max new tokens",
                elem_id="fcl-max-tokens",
            )  # fmt: skip
    return system, temperature, top_p, max_tokens


def build_chat_tab(client: ChatClient, limits: WebLimits, export_dir: Path | None) -> Any:
    """Single-model chat: returns the (dropdown, status, refresh callback) for page load."""
    history = gr.State([])
    with gr.Row():
        model = gr.Dropdown(
            label="Model", choices=[], value=None, scale=4, elem_id="fcl-model", interactive=True
        )
        refresh = gr.Button("↻ Refresh", scale=0, min_width=120, size="sm", elem_id="fcl-refresh")
    status = gr.Markdown("Loading models…", elem_id="fcl-status")
    chatbot = gr.Chatbot(
        label="Conversation",
        elem_id="fcl-chatbot",
        height=460,
        sanitize_html=True,  # second line of defence behind web_render's escaping
        allow_tags=False,
        render_markdown=True,
        buttons=["copy"],
        feedback_options=None,
        placeholder="Pick a model, type a message, press Enter.",
    )
    with gr.Row():
        textbox = gr.Textbox(
            show_label=False,
            placeholder=f"Message (up to {limits.max_input_chars} characters, Enter to send)",
            max_lines=8,
            scale=6,
            elem_id="fcl-input",
        )
        send = gr.Button("Send", variant="primary", scale=1, elem_id="fcl-send")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="fcl-stop")
    with gr.Row():
        regenerate = gr.Button("Regenerate", elem_id="fcl-regenerate")
        clear = gr.Button("Clear", elem_id="fcl-clear")
        export = gr.Button("Export JSON", elem_id="fcl-export")
    export_file = gr.File(label="Conversation (ShareGPT JSON)", visible=False, elem_id="fcl-file")
    system, temperature, top_p, max_tokens = _sampling_controls(limits)

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

    reply_inputs = [model, system, temperature, top_p, max_tokens, history]
    generations = []
    for trigger in (textbox.submit, send.click):
        event = trigger(submit_fn, [textbox, model, history], [textbox, history, chatbot])
        generations.append(event.success(reply_fn, reply_inputs, [history, chatbot]))
    regen = regenerate.click(pop_last_reply, [history], [history, chatbot])
    generations.append(regen.success(reply_fn, reply_inputs, [history, chatbot]))
    stop.click(None, None, None, cancels=generations)
    for clear_event in (clear.click, chatbot.clear):  # the button and the chatbot's own icon
        clear_event(
            lambda: ([], [], gr.update(value=None, visible=False)),
            None,
            [history, chatbot, export_file],
            cancels=generations,
        )
    export.click(export_fn, [system, history], [export_file])
    refresh.click(refresh_fn, [model], [model, status])
    return model, status, refresh_fn


def build_demo(
    client: ChatClient,
    *,
    max_input_chars: int = 4000,
    export_dir: Path | None = None,
    vote_file: str | Path | None = None,
    title: str = TITLE,
) -> gr.Blocks:
    """The whole page; call ``.queue().launch(...)`` on the result (see :mod:`serve.web_cli`)."""
    limits = WebLimits(max_input_chars=max_input_chars)
    with gr.Blocks(title=title, analytics_enabled=False, fill_height=True) as demo:
        gr.Markdown(f"## {title}")
        model, status, refresh_fn = build_chat_tab(client, limits, export_dir)
        demo.load(refresh_fn, [model], [model, status])
    return demo
