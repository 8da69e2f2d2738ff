"""The OpenAI-compatible routes: parse the request model, call the service on ``app.state``,
return a model or an SSE stream. :func:`serve.openai.app.create_app` includes :data:`router`.

With ``--api-key``, every ``/v1`` route needs ``Authorization: Bearer KEY``; ``/health`` and
``/metrics`` stay open for probes and scrapers.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from serve.auth import require_bearer
from serve.openai.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ModelList,
)
from serve.openai.service import OpenAIService
from serve.schemas import ErrorResponse

ERROR_RESPONSES = {code: {"model": ErrorResponse} for code in (400, 401, 404, 503)}

require_api_key = require_bearer(lambda request: request.app.state.api_keys, credential="API key")
V1 = {"dependencies": [Depends(require_api_key)], "responses": ERROR_RESPONSES}

router = APIRouter()


@router.get("/v1/models", **V1)
async def list_models(request: Request) -> ModelList:
    return await request.app.state.service.models()


@router.post("/v1/chat/completions", response_model=None, **V1)
async def chat_completions(
    req: ChatCompletionRequest, request: Request
) -> ChatCompletionResponse | StreamingResponse:
    service: OpenAIService = request.app.state.service
    if req.stream:
        events = await service.chat_stream(req)
        return StreamingResponse(events, media_type="text/event-stream")
    return await service.chat(req)


@router.post("/v1/completions", response_model=None, **V1)
async def completions(
    req: CompletionRequest, request: Request
) -> CompletionResponse | StreamingResponse:
    service: OpenAIService = request.app.state.service
    if req.stream:
        events = await service.completions_stream(req)
        return StreamingResponse(events, media_type="text/event-stream")
    return await service.completions(req)


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    models = await request.app.state.service.client.list_models()
    return {"status": "ok", "models": models}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    body = request.app.state.metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4")
