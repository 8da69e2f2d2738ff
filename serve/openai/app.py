"""The OpenAI-compatible HTTP server's factory: state, middleware, error handlers and the routes
of :mod:`serve.openai.routes` (thin, over :class:`~serve.openai.service.OpenAIService`).

Every error, including FastAPI's validation errors and malformed JSON, is answered in OpenAI's
shape (see :mod:`serve.error_handlers`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.body_limit import install_body_limit
from serve.cluster.client import ServeClient
from serve.config import ApiConfig
from serve.error_handlers import install_error_handlers
from serve.openai.metrics import ApiMetrics
from serve.openai.routes import router
from serve.openai.service import OpenAIService

UNMATCHED_ROUTE = "unmatched"  # the one label of every path no route serves


def route_label(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route serving ``scope`` (``/v1/models``), never the raw path, so
    random paths cannot grow /metrics: the router's match, else the first of ``routes`` that
    matches (a request answered before routing, e.g. a 413), else :data:`UNMATCHED_ROUTE`."""
    route = scope.get("route")
    if route is None:
        route = next((r for r in routes if r.matches(scope)[0] is not Match.NONE), None)
    return getattr(route, "path", None) or UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    """Counts requests (by route template and status), in-flight and time to response headers.

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` wraps every request in
    extra tasks and streams, which cost about a millisecond per request on the hot path.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

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
                self.metrics.observe_request(route_label(scope, self.routes), status, seconds)
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_metrics)
        finally:
            self.metrics.in_flight.dec()


def create_app(config: ApiConfig, *, client: ServeClient | None = None) -> FastAPI:
    """The API app; ``client`` may be injected (tests), else one is built for the controller."""
    owned = client is None
    client = client or ServeClient(
        config.controller, timeout=config.worker_timeout, worker_secret=config.worker_secret
    )

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
    install_body_limit(app, config.max_body_bytes)
    # Outermost, so it also counts what the inner layers refuse (413, 500).
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics, routes=router.routes)

    app.include_router(router)
    return app
