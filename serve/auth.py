"""Bearer-token checks shared by every server: API keys on the OpenAI API, the worker secret on
the controller and the workers. One implementation, so all parse ``Authorization`` the same way.

The controller and workers are internal: whoever reaches them can register a rogue worker or
generate without an API key. :func:`check_exposure` refuses to start one on a non-loopback
address without a worker secret (``--insecure`` overrides).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence

from fastapi import Request

from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.processes import is_loopback
from serve.config import WORKER_SECRET_ENV
from serve.errors import AuthenticationError


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header; the scheme is case-insensitive
    (RFC 7235). ``None`` when the header is missing, uses another scheme or has no token."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def require_bearer(
    accepted: Callable[[Request], Sequence[str]], *, credential: str
) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that lets a request through only with one of ``accepted(request)``
    as its bearer token (no accepted tokens: no check). Raises :class:`AuthenticationError`
    (401, OpenAI's error shape) naming ``credential`` ("API key", "worker secret").

    The check is ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency in
    its thread pool, a thread hop on every request for a few microseconds of work."""

    async def check(request: Request) -> None:
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


def _worker_secrets(request: Request) -> list[str]:
    secret = request.app.state.worker_secret
    return [secret] if secret else []


# The controller's and workers' routes (but /health) need the worker secret when one is set.
require_worker_secret = require_bearer(_worker_secrets, credential="worker secret")


def worker_secret_headers(secret: str | None) -> dict[str, str]:
    """What a caller of the controller or a worker sends: ``Authorization`` (none: no secret)."""
    return {"Authorization": f"Bearer {secret}"} if secret else {}


class InsecureBindError(FastChatLiteError):
    """An internal server asked to listen beyond loopback with nothing guarding it."""


def check_exposure(role: str, host: str, secret: str | None, insecure: bool) -> None:
    """Raise :class:`InsecureBindError` when the ``role`` server ("controller", "worker") would
    bind non-loopback ``host`` without a worker secret, unless ``insecure``."""
    if secret or insecure or is_loopback(host):
        return
    raise InsecureBindError(
        f"refusing to start the {role} on {host} without a worker secret: anyone who can reach "
        f"that address could register a worker or generate without an API key. Give the "
        f"controller, workers and API the same --worker-secret (or ${WORKER_SECRET_ENV}), bind "
        f"--host 127.0.0.1, or pass --insecure on a network you trust"
    )
