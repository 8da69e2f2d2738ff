"""The request body cap every server of the stack installs (``--max-body-bytes``).

A body over the cap is answered 413 in OpenAI's error shape before the app parses any of it:
at once when ``Content-Length`` announces it, else as soon as the chunks received pass the cap.
One oversized request must not cost a server seconds of JSON parsing and tokenizing (and
gigabytes of memory) while every other caller waits.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.error_handlers import error_response
from serve.errors import RequestTooLargeError


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodySizeLimitMiddleware:
    """Rejects request bodies larger than ``max_bytes`` with 413.

    A chunked body (no ``Content-Length``) is read here, at most ``max_bytes`` of it, and handed
    to the app whole; later ``receive`` calls go to the server (disconnect detection).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await self._reject(scope, receive, send, f"{declared} bytes")
            else:
                await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left; let the app see it
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._reject(scope, receive, send, f"more than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        error = RequestTooLargeError(
            f"the request body is {size}; this server accepts at most {self.max_bytes} bytes "
            "(--max-body-bytes): shorten the prompt or the messages"
        )
        info = error.to_info()
        # The unread rest of the body cannot be skipped cheaply: close the connection after
        # answering, so the client stops sending and reads the 413 instead of a stalled upload.
        response = error_response(
            error.status_code, info.message, info.type, info.code, headers={"Connection": "close"}
        )
        await response(scope, receive, send)


def install_body_limit(app: FastAPI, max_bytes: int) -> None:
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_bytes)
