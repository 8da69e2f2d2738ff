"""An engine that forwards to another OpenAI-compatible server: ``serve worker --upstream URL``.

vLLM, SGLang, llama.cpp's server or another fastchat-lite API then sits behind our controller,
API, web demo and eval. Chat messages go to ``POST {URL}/chat/completions`` (the upstream applies
its own chat template), raw prompts to ``{URL}/completions``, always streamed (SSE) with
``stream_options.include_usage`` so token counts are the upstream's. Sampling parameters are
sent as OpenAI names; our extensions (``top_k``, ``repetition_penalty``, ``ignore_eos``,
``stop_token_ids``) only when set, since only some servers know them.

Errors keep their meaning: an upstream 4xx is ours with its message (401/403, the worker's own
``--upstream-api-key`` being refused, is a 502 instead: the caller's key is not at fault), an
upstream 5xx, an unreachable upstream or a stream cut short is 503 ``worker_failed``. Closing
the output iterator closes the upstream connection, which makes the upstream cancel the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from fastchat_lite.errors import FastChatLiteError
from serve.config import WorkerConfig
from serve.engine.base import EngineFinishReason, EngineOutput
from serve.errors import ServeError, WorkerFailedError
from serve.schemas import ChatMessage, ErrorInfo, SamplingParams

log = logging.getLogger(__name__)

READ_TIMEOUT = 120.0  # seconds between two chunks of the upstream's stream
START_TIMEOUT = 300.0  # how long a starting worker waits for the upstream to list its model
FINISH_REASONS: dict[str, EngineFinishReason] = {"length": "length", "abort": "abort"}


class UpstreamError(FastChatLiteError):
    """The upstream cannot be used as configured (unreachable, refuses the key, no such model)."""


def request_body(
    model: str, source: str | list[ChatMessage], params: SamplingParams
) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of the OpenAI request that generates ``source`` with ``params``."""
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    optional = {
        "max_tokens": params.max_tokens,
        "stop": params.stop or None,
        "seed": params.seed,
        "presence_penalty": params.presence_penalty or None,
        "frequency_penalty": params.frequency_penalty or None,
        "top_k": params.top_k if params.top_k > 0 else None,
        "repetition_penalty": params.repetition_penalty if params.repetition_penalty != 1 else None,
        "ignore_eos": params.ignore_eos or None,
        "stop_token_ids": params.stop_token_ids or None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if isinstance(source, str):
        return "/completions", {**body, "prompt": source}
    messages = [{**m.as_dict(), **({"name": m.name} if m.name else {})} for m in source]
    return "/chat/completions", {**body, "messages": messages}


def error_info(body: bytes) -> ErrorInfo:
    """The error in an upstream's error body: OpenAI's ``{"error": {...}}``, vLLM's older flat
    ``{"message", "type", "code": 400}``, FastAPI's ``{"detail"}``, or the raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data = data["error"]
    elif isinstance(data, dict) and "detail" in data and "message" not in data:
        data = {"message": str(data["detail"])}
    if not isinstance(data, dict) or "message" not in data:
        return ErrorInfo(message=body[:300].decode(errors="replace") or "(empty body)")
    code, param = data.get("code"), data.get("param")
    return ErrorInfo(
        message=str(data["message"]),
        type=str(data.get("type") or "invalid_request_error"),
        param=None if param is None else str(param),
        code=None if code is None else str(code),
    )


def upstream_error(status: int, body: bytes, url: str) -> ServeError:
    """Our error for an upstream's non-200 answer (see the module docstring)."""
    info = error_info(body)
    if status in (401, 403):
        return ServeError(
            f"the upstream {url} refused this worker's credentials (HTTP {status}: "
            f"{info.message}); check the worker's --upstream-api-key",
            status_code=502,
            code="upstream_auth_failed",
        )
    if 400 <= status < 500:
        if "maximum context length" in info.message.lower() and not _named(info.code):
            info.code = "context_length_exceeded"  # vLLM says so in words, with code "400"
        return ServeError.from_info(info, status)
    return WorkerFailedError(f"the upstream {url} failed (HTTP {status}): {info.message}")


def _named(code: str | None) -> bool:
    return code is not None and not code.isdigit()


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined by newlines)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


class UpstreamEngine:
    """Forwards each sequence to an OpenAI-compatible server; satisfies
    :class:`~serve.engine.base.TextEngine`. ``http`` may be injected (tests); otherwise one
    client is made on first use (inside the worker's event loop)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        context_length: int,
        max_batch_size: int = 32,
        api_key: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.context_length = context_length
        self.max_batch_size = max_batch_size  # the capacity the controller dispatches by
        self.api_key = api_key
        self._http = http
        self._running = 0
        self._aborted = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return 0  # the upstream queues; we cannot see its queue

    @property
    def aborted(self) -> int:
        return self._aborted

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=httpx.Timeout(READ_TIMEOUT, connect=5.0),
                limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
                trust_env=False,
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def generate_text(
        self, source: str | list[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[EngineOutput]:
        path, body = request_body(self.model, source, params)
        self._running += 1
        try:
            async with self._client().stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    body = await response.aread()
                    raise upstream_error(response.status_code, body, self.base_url)
                async for out in self._outputs(response, chat=path == "/chat/completions"):
                    yield out
        except (GeneratorExit, asyncio.CancelledError):  # our caller left: leaving the block
            # closed the upstream request, which cancels it there
            self._aborted += 1
            raise
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise WorkerFailedError(
                f"the upstream {self.base_url} is unreachable; is it running?"
            ) from None
        except httpx.HTTPError as exc:
            raise WorkerFailedError(
                f"the upstream {self.base_url} failed mid-request ({type(exc).__name__})"
            ) from None
        finally:
            self._running -= 1

    async def _outputs(
        self, response: httpx.Response, *, chat: bool
    ) -> AsyncIterator[EngineOutput]:
        """Text outputs as they arrive, then one last output with the finish reason and the
        upstream's usage (which comes after the finish reason, in the last event)."""
        prompt_tokens = completion_tokens = pieces = 0
        finish: EngineFinishReason | None = None
        async for data in sse_data(response.aiter_lines()):
            if data == "[DONE]":
                break
            try:
                event = json.loads(data)
            except ValueError:
                message = f"the upstream sent a malformed event: {data[:100]!r}"
                raise WorkerFailedError(message) from None
            if isinstance(event.get("error"), dict):
                info = error_info(json.dumps(event).encode())
                raise WorkerFailedError(f"the upstream failed mid-request: {info.message}")
            if usage := event.get("usage"):
                prompt_tokens = usage.get("prompt_tokens") or prompt_tokens
                completion_tokens = usage.get("completion_tokens") or completion_tokens
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                if text:
                    pieces += 1
                    yield EngineOutput(text, prompt_tokens, max(pieces, completion_tokens))
                if reason := choice.get("finish_reason"):
                    finish = FINISH_REASONS.get(reason, "stop")
        if finish is None:
            raise WorkerFailedError(f"the upstream {self.base_url} ended the stream unfinished")
        yield EngineOutput("", prompt_tokens, completion_tokens or pieces, finish)


def discover(
    base_url: str,
    model: str | None,
    api_key: str | None,
    *,
    timeout: float = START_TIMEOUT,
    get: Callable[..., httpx.Response] = httpx.get,
) -> tuple[str, int | None]:
    """(model name, its ``max_model_len`` or None) from the upstream's ``GET /models``; waits up
    to ``timeout`` s for the upstream to come up and list the model. Raises UpstreamError.
    ``get`` is injectable (tests)."""
    url = f"{base_url.rstrip('/')}/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline, why, said = time.monotonic() + timeout, "", 0.0
    while True:
        try:
            response = get(url, headers=headers, timeout=10.0, trust_env=False)
        except httpx.HTTPError as exc:
            why = f"unreachable ({type(exc).__name__})"
        else:
            if response.status_code in (401, 403):
                raise UpstreamError(f"{url} refused the key (HTTP {response.status_code}); "
                                    "pass the upstream's key as --upstream-api-key")  # fmt: skip
            cards = _model_cards(response)
            ids = [str(card.get("id")) for card in cards]
            name = model or (ids[0] if ids else None)
            if name in ids:
                length = cards[ids.index(name)].get("max_model_len")
                return name, length if isinstance(length, int) and length > 0 else None
            why = f"lists {ids or 'no models'}" + (f", not {model!r}" if model else "")
        if time.monotonic() > deadline:
            raise UpstreamError(f"the upstream {url} {why} after {timeout:.0f} s")
        if time.monotonic() - said > 15:
            log.warning("waiting for the upstream: %s %s", url, why)
            said = time.monotonic()
        time.sleep(1.0)


def _model_cards(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        data = response.json().get("data") if response.status_code == 200 else None
    except ValueError:
        return []
    return [card for card in data or [] if isinstance(card, dict)]


def connect_upstream(config: WorkerConfig, **discover_options: Any) -> UpstreamEngine:
    """The engine of ``serve worker --upstream URL``: model and context length from the
    upstream's ``/models`` (``--upstream-model`` / ``--context-length`` when given)."""
    assert config.upstream
    model, length = discover(
        config.upstream, config.upstream_model, config.upstream_api_key, **discover_options
    )
    context = config.context_length or length
    if context is None:
        raise UpstreamError(
            f"the upstream {config.upstream} does not report max_model_len for {model!r}; "
            "pass its context window as --context-length N"
        )
    return UpstreamEngine(
        config.upstream,
        model,
        context_length=context,
        max_batch_size=config.max_batch_size,
        api_key=config.upstream_api_key,
    )
