"""The teacher: any OpenAI-compatible server, through ``/chat/completions`` or ``/completions``.

Retries with exponential backoff (and ``Retry-After``) on 408/409/429/5xx and dropped
connections; a refused request (401, 404, a bad model name) fails at once. httpx's transport
can be injected for tests. ``llm_judge/client.py`` holds the same retry rules for the chat
route; data_prep may not import a sibling stage, so the two wait for one core client.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import httpx

from fastchat_lite.errors import FastChatLiteError

RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})
MODES = ("chat", "completion")


class TeacherError(FastChatLiteError):
    """The teacher refused a request, or kept failing after every retry."""


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


def api_base(url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1/`` both mean ``http://host:8000/v1``."""
    base = url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


class TeacherClient:
    """``await client.complete(prompt) -> Reply``, through the chat or the completion route."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        mode: str = "chat",
        api_key: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = api_base(base_url)
        self.model = model
        self.mode = mode
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retries = 0
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> TeacherClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        return min(self.backoff * 2**attempt, self.max_backoff) * random.uniform(0.5, 1.0)

    def _payload(self, prompt: str, sampling: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.mode == "chat":
            messages = [{"role": "user", "content": prompt}]
            return "/chat/completions", {"model": self.model, "messages": messages, **sampling}
        return "/completions", {"model": self.model, "prompt": prompt, **sampling}

    async def complete(self, prompt: str, **sampling: Any) -> Reply:
        """One reply to ``prompt``; ``sampling`` (temperature, max_tokens, ...) goes in the body.

        Raises :class:`TeacherError` naming the URL, the model and the last failure.
        """
        route, payload = self._payload(prompt, sampling)
        where = f"{self.base_url}{route} (model {self.model})"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = await self._http.post(route, json=payload)
            except httpx.TransportError as exc:
                problem, status = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code == 200:
                    return self._reply(response, where)
                problem, status = _error_text(response), response.status_code
                retry_after = response.headers.get("retry-after")
                if status not in RETRYABLE:
                    raise TeacherError(f"{where}: HTTP {status}: {problem}")
            if attempt == self.max_retries:
                last = f"HTTP {status}: {problem}" if status else problem
                raise TeacherError(f"{where}: still failing after {attempt} retries ({last})")
            self.retries += 1
            await asyncio.sleep(self._delay(attempt, retry_after))
        raise AssertionError("unreachable")

    def _reply(self, response: httpx.Response, where: str) -> Reply:
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] if self.mode == "chat" else choice["text"]
        except (ValueError, TypeError, KeyError, IndexError):
            field = "message.content" if self.mode == "chat" else "text"
            raise TeacherError(f"{where}: the response has no choices[0].{field}") from None
        usage = body.get("usage") or {}
        return Reply(
            text or "",
            choice.get("finish_reason"),
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
        )


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(body)[:300]
