"""``fastchat-lite template``: list templates, print one as Jinja, or render a conversation."""

from __future__ import annotations

import argparse
import json

from fastchat_lite.templates import DEFAULT_TEMPLATE


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "template",
        help="list conversation templates, export one as a Jinja chat_template, render a sample",
        description="Examples: fastchat-lite template list; fastchat-lite template jinja "
        "vicuna_v1.1; fastchat-lite template render vicuna_v1.1 conv.json",
    )
    parser.add_argument("action", choices=("list", "jinja", "render"))
    parser.add_argument("name", nargs="?", default=DEFAULT_TEMPLATE)
    parser.add_argument("conversation", nargs="?", help="JSON file with one conversation")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fastchat_lite.jinja_export import chat_template
    from fastchat_lite.messages import to_messages
    from fastchat_lite.templates import get_template, list_templates, render_prompt

    if args.action == "list":
        print("\n".join(list_templates()))
    elif args.action == "jinja":
        print(chat_template(args.name))
    else:
        get_template(args.name)
        if args.conversation:
            with open(args.conversation, encoding="utf-8") as handle:
                conversation = json.load(handle)
        else:
            conversation = [{"from": "human", "value": "Hello!"}, {"from": "gpt", "value": "Hi."}]
        print(
            render_prompt(to_messages(conversation), args.name, bos_token="<s>", eos_token="</s>")
        )
    return 0
