"""An async client for any OpenAI-compatible server: ``/chat/completions`` and ``/completions``.

Retries with exponential backoff on 408/409/429/5xx and dropped connections, honouring the
server's ``Retry-After`` (capped at ``max_backoff``); a refused request (401, 404, a bad model
name) fails at once. Tokens, calls and retries are summed per client. httpx rather than the
``openai`` package keeps it a base dependency; tests inject ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from fastchat_lite.errors import ApiError

RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})


def api_base(url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1/`` both mean ``http://host:8000/v1``."""
    base = url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


@dataclass(frozen=True)
class Completion:
    """One choice of a reply: its text and the tokens the request cost."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Usage:
    """Calls answered, retries made and tokens spent through one client."""

    calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, completion: Completion) -> None:
        self.calls += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens


class OpenAIClient:
    """``await client.chat(messages, **sampling)`` or ``await client.complete(prompt, **sampling)``
    -> :class:`Completion`, for one ``model`` at ``base_url`` (with or without ``/v1``).

    ``sampling`` (temperature, max_tokens, stop, ...) goes into the request body as given.
    Both raise :class:`~fastchat_lite.errors.ApiError` for a refused request at once, and for a
    retryable failure once ``max_retries`` retries are spent.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = api_base(base_url)
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.usage = Usage()
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(self, messages: list[dict[str, str]], **sampling: Any) -> Completion:
        """The assistant's reply to ``messages`` through ``/chat/completions``."""
        body = await self._post("/chat/completions", {"messages": messages, **sampling})
        return self._read(body, "/chat/completions")

    async def complete(self, prompt: str, **sampling: Any) -> Completion:
        """The continuation of ``prompt`` through ``/completions``."""
        body = await self._post("/completions", {"prompt": prompt, **sampling})
        return self._read(body, "/completions")

    def _where(self, route: str) -> str:
        return f"{self.base_url}{route} (model {self.model})"

    async def _post(self, route: str, payload: dict[str, Any]) -> Any:
        payload = {"model": self.model, **payload}
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = await self._http.post(route, json=payload)
            except httpx.TransportError as exc:
                problem, status = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        problem = f"the response is not JSON: {response.text[:300]!r}"
                        raise ApiError(f"{self._where(route)}: {problem}", 200) from None
                problem, status = _error_text(response), response.status_code
                retry_after = response.headers.get("retry-after")
                if status not in RETRYABLE:
                    raise ApiError(f"{self._where(route)}: HTTP {status}: {problem}", status)
            if attempt == self.max_retries:
                last = f"HTTP {status}: {problem}" if status else problem
                raise ApiError(
                    f"{self._where(route)}: still failing after {attempt} retries (last: {last})",
                    status,
                )
            self.usage.retries += 1
            await asyncio.sleep(self._delay(attempt, retry_after))
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before retry ``attempt + 1``: the server's wait if it gave one, else
        exponential backoff with jitter; never more than ``max_backoff``."""
        wait = _retry_after_seconds(retry_after)
        if wait is None:
            wait = self.backoff * 2**attempt * random.uniform(0.5, 1.0)
        return min(max(wait, 0.0), self.max_backoff)

    def _read(self, body: Any, route: str) -> Completion:
        chat = route == "/chat/completions"
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
        except (TypeError, KeyError, IndexError):
            field = "message.content" if chat else "text"
            where = self._where(route)
            raise ApiError(f"{where}: the response has no choices[0].{field}", 200) from None
        usage = body.get("usage") or {}
        completion = Completion(
            text or "",
            choice.get("finish_reason"),
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
        )
        self.usage.add(completion)
        return completion


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def _error_text(response: httpx.Response) -> str:
    """The server's own words: OpenAI's ``error.message`` if present, else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(body)[:300]
