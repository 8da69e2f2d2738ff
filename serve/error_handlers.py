"""One error shape for every server of the stack: ``{"error": {message, type, param, code}}``.

:func:`install_error_handlers` makes FastAPI answer validation failures (including malformed
JSON) with 400 in OpenAI's shape instead of its default 422 body, maps every
:class:`~serve.errors.ServeError` to its status, and turns anything unexpected into a logged 500
that still has the same shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.errors import ServeError
from serve.schemas import ErrorInfo, ErrorResponse

log = logging.getLogger(__name__)


def error_response(
    status: int, message: str, type_: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(message=message, type=type_, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


def serve_error_response(exc: ServeError) -> JSONResponse:
    body = ErrorResponse(error=exc.to_info())
    return JSONResponse(body.model_dump(), status_code=exc.status_code)


def describe_validation_error(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """A one-line message and the offending parameter for pydantic's error list."""
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "missing":
        message = f"missing required parameter: {param}"
    elif param:
        message = f"invalid value for {param}: {message}"
    return message, param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_validation_error(list(exc.errors()))
        return error_response(400, message, "invalid_request_error", "invalid_value", param)

    @app.exception_handler(ServeError)
    async def _serve(_request: Request, exc: ServeError) -> JSONResponse:
        return serve_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"internal error: {type(exc).__name__}", "server_error")
