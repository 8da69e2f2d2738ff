"""A small async client for OpenAI-compatible ``/chat/completions``: retries with backoff on
429, 5xx and dropped connections (honouring ``Retry-After``), token usage counted per client.

httpx, not the ``openai`` package, so the evaluation stage needs only the ``[eval]`` extra.
The transport can be injected (``httpx.MockTransport`` in tests).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from fastchat_lite.errors import MissingExtraError
from llm_judge.errors import ApiError

RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise MissingExtraError(
            "fastchat-lite eval needs httpx: pip install 'fastchat-lite[eval]'"
        ) from exc
    return httpx


def api_base(url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1/`` both mean ``http://host:8000/v1``."""
    base = url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


@dataclass
class Usage:
    """Tokens and calls spent through one client (cache hits spend nothing)."""

    calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: dict[str, Any] | None) -> None:
        self.calls += 1
        if usage:
            self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage.get("completion_tokens") or 0)


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


class ChatClient:
    """``await client.chat(model, messages, temperature=..., max_tokens=...) -> Completion``.

    Raises :class:`ApiError` for a refused request (4xx other than 408/409/429) at once, and
    for a retryable failure once ``max_retries`` retries are spent.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        transport: Any = None,
    ) -> None:
        httpx = _httpx()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = api_base(base_url)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.usage = Usage()
        self._errors = (httpx.TransportError,)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        return min(self.backoff * 2**attempt, self.max_backoff) * random.uniform(0.5, 1.0)

    async def chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        temperature: float = 0.0,
        max_tokens: int = 1024,
    ) -> Completion:
        payload = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        where = f"{self.base_url}/chat/completions (model {model})"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = await self._http.post("/chat/completions", json=payload)
            except self._errors as exc:
                problem, status = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code == 200:
                    return self._completion(response.json(), where)
                problem, status = _error_text(response), response.status_code
                retry_after = response.headers.get("retry-after")
                if status not in RETRYABLE:
                    raise ApiError(f"{where}: HTTP {status}: {problem}", status)
            if attempt == self.max_retries:
                last = f"HTTP {status}: {problem}" if status else problem
                raise ApiError(
                    f"{where}: still failing after {self.max_retries} retries (last: {last})",
                    status,
                )
            self.usage.retries += 1
            await asyncio.sleep(self._delay(attempt, retry_after))
        raise AssertionError("unreachable")

    def _completion(self, body: Any, where: str) -> Completion:
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
        except (TypeError, KeyError, IndexError):
            raise ApiError(f"{where}: the response has no choices[0].message.content") from None
        usage = body.get("usage") or {}
        self.usage.add(usage)
        return Completion(
            text,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            choice.get("finish_reason"),
        )


def _error_text(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(body)[:300]
