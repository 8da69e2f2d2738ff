"""``fastchat-lite chat``: a terminal chat, against a local model dir or a running OpenAI API.

``--model DIR`` loads the model in-process behind the same batching engine the worker uses;
``--api URL`` talks to any OpenAI-compatible server (ours included) with streaming. Commands:
``/clear`` forgets the history, ``/exit`` (or Ctrl-D) quits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastchat_lite.errors import FastChatLiteError
from serve.config import DEFAULT_TEMPERATURE

Streamer = Callable[[list[dict[str, str]]], AsyncIterator[str]]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="chat with a model in the terminal")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="local Hugging Face model directory (in-process)")
    source.add_argument("--api", help="base URL of an OpenAI-compatible API, e.g. .../v1")
    parser.add_argument("--model-name", help="model to ask the API for (default: its first)")
    parser.add_argument("--api-key", default="none", help="API key for --api")
    parser.add_argument("--template", help="chat template override for --model")
    parser.add_argument("--system", help="system prompt")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.set_defaults(run=run)


def _local_streamer(args: argparse.Namespace) -> tuple[Streamer, Callable[[], None]]:
    from serve.cluster.protocol import GenerateRequest
    from serve.cluster.worker import build_service
    from serve.config import WorkerConfig
    from serve.schemas import SamplingParams

    service = build_service(
        WorkerConfig(model=args.model, template=args.template, device=args.device)
    )
    params = SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens)

    async def stream(messages: list[dict[str, str]]) -> AsyncIterator[str]:
        prepared = service.prepare(GenerateRequest(messages=messages, params=params))
        async with contextlib.aclosing(service.generate(prepared)) as outputs:
            async for out in outputs:
                if out.finish_reason == "error":
                    raise FastChatLiteError(out.error or "generation failed")
                yield out.text

    return stream, service.engine.close


def _api_streamer(args: argparse.Namespace) -> tuple[Streamer, Callable[[], None]]:
    import openai

    base = args.api.rstrip("/")
    base = base if base.endswith("/v1") else f"{base}/v1"
    client = openai.AsyncOpenAI(base_url=base, api_key=args.api_key, max_retries=0)

    async def stream(messages: list[dict[str, str]]) -> AsyncIterator[str]:
        model = args.model_name or (await client.models.list()).data[0].id
        response = await client.chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
        )
        async for chunk in response:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    return stream, lambda: None


async def chat_loop(stream: Streamer, system: str | None, read: Callable[[str], str]) -> None:
    """Read a line, stream the reply, keep the history; ``read`` raises EOFError on Ctrl-D."""
    history: list[dict[str, str]] = []
    print("type /clear to start over, /exit or Ctrl-D to quit", flush=True)
    while True:
        try:
            line = read("USER: ").strip()
        except EOFError:
            print()
            return
        if line == "/exit":
            return
        if line == "/clear":
            history.clear()
            print("(history cleared)", flush=True)
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        messages = ([{"role": "system", "content": system}] if system else []) + history
        print("ASSISTANT: ", end="", flush=True)
        reply = []
        try:
            async for delta in stream(messages):
                reply.append(delta)
                print(delta, end="", flush=True)
        except Exception as exc:
            history.pop()
            print(f"\n[error: {_message(exc)}]", flush=True)
            continue
        print(flush=True)
        history.append({"role": "assistant", "content": "".join(reply)})


def _message(exc: Exception) -> str:
    body: Any = getattr(exc, "body", None)
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(exc) or type(exc).__name__


def run(args: argparse.Namespace) -> int:
    stream, close = _local_streamer(args) if args.model else _api_streamer(args)
    try:
        asyncio.run(chat_loop(stream, args.system, input))
    except KeyboardInterrupt:
        print(file=sys.stderr)
    finally:
        close()
    return 0
