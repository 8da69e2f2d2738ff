"""The OpenAI-compatible HTTP server: thin routes over :class:`~serve.openai.service.OpenAIService`.

Every error, including FastAPI's validation errors and malformed JSON, is answered in OpenAI's
shape (see :mod:`serve.error_handlers`). With ``--api-key``, every ``/v1`` route needs
``Authorization: Bearer KEY``; ``/health`` and ``/metrics`` stay open for probes and scrapers.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.cluster.client import ServeClient
from serve.config import ApiConfig
from serve.error_handlers import install_error_handlers
from serve.errors import AuthenticationError
from serve.openai.metrics import ApiMetrics
from serve.openai.service import OpenAIService
from serve.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    ModelList,
)

ERROR_RESPONSES = {code: {"model": ErrorResponse} for code in (400, 401, 404, 503)}


def require_api_key(request: Request) -> None:
    keys: list[str] = request.app.state.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer ") or not header[7:].strip():
        raise AuthenticationError(
            "You didn't provide an API key: send 'Authorization: Bearer YOUR_KEY'"
        )
    given = header[7:].strip().encode()
    if not any(secrets.compare_digest(given, key.encode()) for key in keys):
        raise AuthenticationError("Incorrect API key provided")


class RequestMetricsMiddleware:
    """Counts requests, in-flight and time to response headers.

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` wraps every request in
    extra tasks and streams, which cost about a millisecond per request on the hot path.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_metrics(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                seconds = time.perf_counter() - started
                self.metrics.observe_request(scope["path"], status, seconds)
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_metrics)
        finally:
            self.metrics.in_flight.dec()


def create_app(config: ApiConfig, *, client: ServeClient | None = None) -> FastAPI:
    """The API app; ``client`` may be injected (tests), else one is built for the controller."""
    owned = client is None
    client = client or ServeClient(config.controller, timeout=config.worker_timeout)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            await client.aclose()

    app = FastAPI(title="fastchat-lite OpenAI-compatible API", lifespan=lifespan)
    app.state.metrics = ApiMetrics()
    app.state.service = OpenAIService(client, app.state.metrics)
    app.state.api_keys = list(config.api_key)
    install_error_handlers(app)

    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)

    v1 = {"dependencies": [Depends(require_api_key)], "responses": ERROR_RESPONSES}

    @app.get("/v1/models", **v1)
    async def list_models(request: Request) -> ModelList:
        return await request.app.state.service.models()

    @app.post("/v1/chat/completions", response_model=None, **v1)
    async def chat_completions(
        req: ChatCompletionRequest, request: Request
    ) -> ChatCompletionResponse | StreamingResponse:
        service: OpenAIService = request.app.state.service
        if req.stream:
            events = await service.chat_stream(req)
            return StreamingResponse(events, media_type="text/event-stream")
        return await service.chat(req)

    @app.post("/v1/completions", response_model=None, **v1)
    async def completions(
        req: CompletionRequest, request: Request
    ) -> CompletionResponse | StreamingResponse:
        service: OpenAIService = request.app.state.service
        if req.stream:
            events = await service.completions_stream(req)
            return StreamingResponse(events, media_type="text/event-stream")
        return await service.completions(req)

    @app.get("/health")
    async def health(request: Request) -> dict[str, object]:
        models = await request.app.state.service.client.list_models()
        return {"status": "ok", "models": models}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        body = request.app.state.metrics.render()
        return Response(body, media_type="text/plain; version=0.0.4")

    return app
