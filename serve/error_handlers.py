"""One error shape for every server of the stack: ``{"error": {message, type, param, code}}``.

:func:`install_error_handlers` makes FastAPI answer validation failures (including malformed
JSON) with 400 in OpenAI's shape instead of its default 422 body, maps every
:class:`~serve.errors.ServeError` to its status (503s with ``Retry-After``), and turns anything
unexpected into a logged 500 that still has the same shape and keeps the connection open.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.errors import ServeError
from serve.schemas import ErrorInfo, ErrorResponse

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5  # what a 503 tells clients (the openai SDK waits this long, then retries)
# Pydantic error types with an error code of their own (the rest: "invalid_value").
ERROR_CODES = {
    "invalid_unicode": "invalid_unicode",  # serve.schemas.RequestSchema
    "string_unicode": "invalid_unicode",  # pydantic's own check, on constrained strings
    "unsupported_parameter": "unsupported_parameter",  # serve.openai.schemas.UNSUPPORTED
}


def error_response(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(message=message, type=type_, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def serve_error_response(exc: ServeError) -> JSONResponse:
    body = ErrorResponse(error=exc.to_info())
    # Every 503 is temporary here (worker restarting or expired, controller down).
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status_code == 503 else None
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=headers)


def describe_validation_error(errors: list[dict[str, Any]]) -> tuple[str, str | None, str]:
    """A one-line message, the offending parameter and the error code for pydantic's errors."""
    # The most telling error first: in a union (content: str | list[TextPart]) the member
    # that failed for the real reason, not "input should be a valid string".
    known = [e for e in errors if e.get("type") in ERROR_CODES]
    first = (known or errors or [{"msg": "invalid request", "loc": ()}])[0]
    # loc without "body" and pydantic's union member tags ("list[TextPart]")
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and "[" not in str(p)]
    param = ".".join(loc) or None
    kind = str(first.get("type"))
    code = ERROR_CODES.get(kind, "invalid_value")
    if kind == "json_invalid":
        return "the request body is not valid JSON", None, "invalid_value"
    message = str(first.get("msg", "invalid request"))
    if kind == "unsupported_parameter":
        return message, param, code  # the message names the parameter already
    if kind == "missing":
        message = f"missing required parameter: {param}"
    elif param:
        message = f"invalid value for {param}: {message}"
    return message, param, code


class UnexpectedErrorMiddleware:
    """Answers an exception no handler took with a logged 500 in OpenAI's shape.

    Starlette's own last-resort handler re-raises after answering, which makes uvicorn close the
    connection: the client's next request on it then fails with a reset. Here the exception
    stops, so the connection stays usable; it is re-raised only when the response had already
    started (a half-sent response cannot be repaired).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            log.exception("unexpected error")
            if started:
                raise
            message = f"internal error: {type(exc).__name__}"
            await error_response(500, message, "server_error")(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = describe_validation_error(list(exc.errors()))
        return error_response(400, message, "invalid_request_error", code, param)

    @app.exception_handler(ServeError)
    async def _serve(_request: Request, exc: ServeError) -> JSONResponse:
        return serve_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind)

    app.add_middleware(UnexpectedErrorMiddleware)
