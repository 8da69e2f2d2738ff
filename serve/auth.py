"""Bearer-token checks shared by every server: API keys on the OpenAI API, the worker secret on
the controller. One implementation, so both parse ``Authorization`` the same way."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from fastapi import Request

from serve.errors import AuthenticationError


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header; the scheme is case-insensitive
    (RFC 7235). ``None`` when the header is missing, uses another scheme or has no token."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def require_bearer(
    accepted: Callable[[Request], Sequence[str]], *, credential: str
) -> Callable[[Request], None]:
    """A FastAPI dependency that lets a request through only with one of ``accepted(request)``
    as its bearer token (no accepted tokens: no check). Raises :class:`AuthenticationError`
    (401, OpenAI's error shape) naming ``credential`` ("API key", "worker secret")."""

    def check(request: Request) -> None:
        tokens = accepted(request)
        if not tokens:
            return
        given = bearer_token(request.headers.get("authorization", ""))
        if given is None:
            raise AuthenticationError(
                f"You didn't provide a {credential}: send 'Authorization: Bearer YOUR_KEY'"
            )
        if not any(secrets.compare_digest(given.encode(), t.encode()) for t in tokens):
            raise AuthenticationError(f"Incorrect {credential} provided")

    return check
