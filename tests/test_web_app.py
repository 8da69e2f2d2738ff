"""The page builds on an injected client, and `serve web` parses its flags into WebConfig."""

from __future__ import annotations

from fastchat_lite.cli import build_parser
from fastchat_lite.config import build_config
from serve.config import WebConfig
from serve.web.app import build_demo


class IdleClient:
    async def list_models(self) -> list[str]:
        return []

    async def stream_chat(self, model, messages, **sampling):  # pragma: no cover - never called
        yield ""


def test_page_has_every_control_of_the_chat_and_side_by_side_tabs():
    config = build_demo(IdleClient(), vote_file="votes.jsonl").get_config_file()
    elem_ids = {c["props"].get("elem_id") for c in config["components"]}
    expected = {
        "fcl-model", "fcl-model-r", "fcl-status", "fcl-chatbot", "fcl-input", "fcl-send",
        "fcl-stop", "fcl-regenerate", "fcl-clear", "fcl-export", "fcl-system",
        "fcl-temperature", "fcl-top-p", "fcl-max-tokens", "fcl-model-a", "fcl-model-b",
        "fcl-chatbot-a", "fcl-chatbot-b", "fcl-arena-send", "fcl-vote-a", "fcl-vote-both_bad",
    }  # fmt: skip
    assert expected <= elem_ids
    chatbots = [c["props"] for c in config["components"] if c["type"] == "chatbot"]
    assert chatbots and all(p["sanitize_html"] and p["allow_tags"] is False for p in chatbots)


def test_serve_web_flags_become_a_web_config():
    args = build_parser().parse_args(
        ["serve", "web", "--controller", "http://10.0.0.1:9", "--host", "0.0.0.0",
         "--port", "9999", "--vote-file", "votes.jsonl", "--max-input-chars", "100"]
    )  # fmt: skip
    config = build_config(WebConfig, args)
    assert (config.controller, config.host, config.port) == ("http://10.0.0.1:9", "0.0.0.0", 9999)
    assert config.vote_file == "votes.jsonl" and config.max_input_chars == 100
    assert args.run.__module__ == "serve.web.cli"
