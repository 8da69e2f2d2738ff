"""The model worker: one model behind an engine, streaming NDJSON to its callers.

``POST /worker_generate_stream`` takes a :class:`~serve.cluster.protocol.GenerateRequest` and
answers one :class:`~serve.cluster.protocol.GenerateChunk` per line. Prompt errors (bad
conversation shape, a prompt longer than the context) are answered before streaming starts, as
400 in OpenAI's error shape. Templating and tokenizing run in a small thread pool, never on the
event loop, so a long prompt cannot hold up heartbeats or other streams; a prompt whose length
alone shows it cannot fit the context is refused before any tokenizing. Bodies over
``--max-body-bytes`` are refused with 413 before they are parsed. If the caller disconnects, the
stream's ``finally`` cancels the sequence so its batch slot is freed at the next step (counted in
``/worker_status`` as ``aborted``). A background task registers with the controller and heartbeats.

With ``--upstream URL`` the engine is another OpenAI-compatible server
(:mod:`serve.engine.upstream`): :class:`UpstreamService` forwards the request's text, and the
upstream's refusals (a 4xx) are answered before streaming starts, like ours. With a worker
secret every route but ``/health`` needs ``Authorization: Bearer SECRET``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse

from serve.auth import require_worker_secret, worker_secret_headers
from serve.body_limit import install_body_limit
from serve.cluster.protocol import (
    GenerateChunk,
    GenerateRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterWorkerRequest,
    RegisterWorkerResponse,
    WorkerStatus,
)
from serve.config import WorkerConfig
from serve.engine.base import Engine, EngineOutput, TextEngine
from serve.engine.prompting import PromptBuilder, without_reply_lead
from serve.error_handlers import install_error_handlers
from serve.errors import ContextLengthError, ServeError, WorkerFailedError
from serve.schemas import SamplingParams

log = logging.getLogger(__name__)

PREPARE_THREADS = 4  # prompts templated / tokenized at once (the tokenizer releases the GIL)
JOINED_FLUSH_S = 5.0  # a whole-reply stream still sends what it has this often (API read timeouts)


class Prepared(NamedTuple):
    ids: list[int]
    params: SamplingParams
    lead: str  # template text the model emits before the reply, stripped from the output


class StreamingService:
    """What the routes need of a service: status, and NDJSON streams of prepared requests.
    Subclasses say how a request is prepared (``prepare_off_loop``) and generated."""

    def __init__(self, engine: Engine | TextEngine, model_names: list[str]) -> None:
        self.engine = engine
        self.model_names = model_names

    @property
    def context_length(self) -> int:
        return self.engine.context_length

    def status(self) -> WorkerStatus:
        running, waiting = self.engine.running, self.engine.waiting
        return WorkerStatus(
            model_names=self.model_names,
            capacity=self.engine.max_batch_size,
            context_length=self.context_length,
            queue_length=running + waiting,
            running=running,
            waiting=waiting,
            aborted=self.engine.aborted,
        )

    async def prepare_off_loop(self, request: GenerateRequest) -> Any:
        """What :meth:`generate` needs; raises 400-class errors before streaming starts."""
        raise NotImplementedError

    def generate(self, prepared: Any, *, whole: bool = False) -> AsyncIterator[EngineOutput]:
        """``whole``: the caller wants the reply in one piece, so the engine need not hand
        over its outputs any sooner than :func:`joined` sends them."""
        raise NotImplementedError

    async def stream(self, prepared: Any, *, whole: bool = False) -> AsyncIterator[bytes]:
        """NDJSON chunks (one with the whole reply when ``whole``); an unexpected failure ends
        the stream with an error chunk instead of a cut connection, so the caller can tell a
        failed request from a dead worker."""
        try:
            outputs = self.generate(prepared, whole=whole)
            async for line in self._lines(joined(outputs) if whole else outputs):
                yield line
        except ServeError as exc:
            log.warning("request failed: %s", exc)
            yield GenerateChunk.failure(exc).model_dump_json(exclude_defaults=True).encode() + b"\n"
        except Exception as exc:
            log.exception("request failed")
            chunk = GenerateChunk.failure(ServeError(f"generation failed: {exc}"))
            yield chunk.model_dump_json(exclude_defaults=True).encode() + b"\n"

    async def _lines(self, stream: AsyncIterator[EngineOutput]) -> AsyncIterator[bytes]:
        async with contextlib.aclosing(stream):
            async for out in stream:
                if out.finish_reason == "error":
                    chunk = GenerateChunk.failure(ServeError(out.error or "generation failed"))
                else:
                    chunk = GenerateChunk(
                        text=out.text,
                        finish_reason=out.finish_reason,
                        prompt_tokens=out.prompt_tokens,
                        completion_tokens=out.completion_tokens,
                    )
                yield chunk.model_dump_json(exclude_defaults=True).encode() + b"\n"


class WorkerService(StreamingService):
    """Turns generate requests into engine streams (the HF engine or the vLLM adapter)."""

    engine: Engine

    def __init__(self, engine: Engine, prompts: PromptBuilder, model_names: list[str]) -> None:
        super().__init__(engine, model_names)
        self.prompts = prompts
        self._prepare_pool = ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="prepare")

    def prepare(self, request: GenerateRequest) -> Prepared:
        """Prompt ids, params and reply lead; raises 400-class errors before streaming starts.

        A prompt too long to fit even at the vocabulary's longest token per token is refused
        before tokenizing (tokenizing megabytes takes seconds and gigabytes)."""
        param = "messages" if request.messages is not None else "prompt"
        context = self.context_length
        at_least = self.prompts.min_prompt_tokens(request.source)
        if at_least >= context:
            raise ContextLengthError(
                f"This model's maximum context length is {context} tokens, but the prompt needs "
                f"at least {at_least} tokens; shorten the messages or the prompt",
                param=param,
            )
        ids = self.prompts.prompt_ids(request.source)
        params = self.prompts.with_template_stops(request.params)
        try:
            self.engine.max_new_tokens(len(ids), params.max_tokens)
        except ContextLengthError as exc:
            exc.param = param
            raise
        return Prepared(ids, params, self.prompts.reply_lead(request.source))

    async def prepare_off_loop(self, request: GenerateRequest) -> Prepared:
        """:meth:`prepare` in the worker's thread pool, leaving the event loop free."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._prepare_pool, self.prepare, request)

    def generate(self, prepared: Prepared, *, whole: bool = False) -> AsyncIterator[EngineOutput]:
        """Engine outputs for a prepared request (closing it early cancels the sequence)."""
        interval = JOINED_FLUSH_S if whole else None
        outputs = self.engine.generate(prepared.ids, prepared.params, interval=interval)
        return without_reply_lead(outputs, prepared.lead)


class UpstreamService(StreamingService):
    """Forwards generate requests to an OpenAI-compatible server (``--upstream``), which
    templates them itself. Preparing opens the upstream request and waits for its first output,
    so the upstream's refusals are answered with their own status, before streaming starts."""

    engine: TextEngine

    async def prepare_off_loop(self, request: GenerateRequest) -> AsyncIterator[EngineOutput]:
        outputs = self.engine.generate_text(request.source, request.params)
        try:
            first = await anext(outputs)
        except StopAsyncIteration:
            raise WorkerFailedError("the upstream ended the request without output") from None
        except BaseException:
            await outputs.aclose()
            raise
        return _prepend(first, outputs)

    def generate(
        self, prepared: AsyncIterator[EngineOutput], *, whole: bool = False
    ) -> AsyncIterator[EngineOutput]:
        return prepared


async def joined(
    outputs: AsyncIterator[EngineOutput], every: float = JOINED_FLUSH_S
) -> AsyncIterator[EngineOutput]:
    """The reply in as few pieces as the caller's read timeout allows: text is held back and
    sent with the last output, or after ``every`` seconds of holding (a long generation on a
    slow CPU must not look like a dead worker). An error output passes through as it is."""
    loop = asyncio.get_running_loop()
    parts: list[str] = []
    held_since = loop.time()
    async with contextlib.aclosing(outputs):
        async for out in outputs:
            if out.finish_reason == "error":
                yield out
                return
            parts.append(out.text)
            if out.finish_reason is not None or loop.time() - held_since >= every:
                out.text, parts, held_since = "".join(parts), [], loop.time()
                yield out
            if out.finish_reason is not None:
                return


async def _prepend(
    first: EngineOutput, rest: AsyncIterator[EngineOutput]
) -> AsyncIterator[EngineOutput]:
    async with contextlib.aclosing(rest):
        yield first
        async for out in rest:
            yield out


def build_service(config: WorkerConfig) -> StreamingService:
    """The service of one worker process: the engine for ``config.model`` (or the upstream
    server of ``config.upstream``), named for clients."""
    if config.upstream:
        from serve.engine.upstream import connect_upstream

        upstream = connect_upstream(config)
        return UpstreamService(upstream, [config.model_name or upstream.model])
    from serve.engine.backends import load_engine  # torch: only workers that run a model

    engine, prompts = load_engine(config)
    model = Path(config.model).resolve()
    name = config.model_name or (model.stem if model.suffix == ".gguf" else model.name)
    return WorkerService(engine, prompts, [name])


async def _register(
    http: httpx.AsyncClient, config: WorkerConfig, service: StreamingService
) -> float:
    status = service.status()
    req = RegisterWorkerRequest(
        worker_address=config.address,
        model_names=service.model_names,
        capacity=status.capacity,
        context_length=status.context_length,
        queue_length=status.queue_length,
    )
    response = await http.post("/register_worker", json=req.model_dump())
    response.raise_for_status()
    log.info("registered with controller %s as %s", config.controller, config.address)
    return RegisterWorkerResponse.model_validate_json(response.content).heartbeat_interval


async def heartbeat_loop(config: WorkerConfig, service: StreamingService) -> None:
    """Register, then heartbeat forever; re-register whenever the controller forgot us."""
    headers = worker_secret_headers(config.worker_secret)
    async with httpx.AsyncClient(
        base_url=config.controller, headers=headers, timeout=5.0, trust_env=False
    ) as http:
        interval, registered = 1.0, False
        while True:
            try:
                if not registered:
                    interval, registered = await _register(http, config, service), True
                else:
                    beat = HeartbeatRequest(
                        worker_address=config.address, queue_length=service.status().queue_length
                    )
                    response = await http.post("/heartbeat", json=beat.model_dump())
                    response.raise_for_status()
                    registered = HeartbeatResponse.model_validate_json(response.content).known
                    if not registered:
                        log.warning("controller does not know this worker; registering again")
                        continue
            except httpx.HTTPStatusError as exc:
                log.error("controller refused this worker: HTTP %s", exc.response.status_code)
                registered = False
            except httpx.HTTPError as exc:
                log.warning("controller %s unreachable (%s)", config.controller, exc)
                registered = False
            await asyncio.sleep(interval)


def create_app(
    config: WorkerConfig, *, service: StreamingService, register: bool = True
) -> FastAPI:
    """The worker's HTTP app around an already-built ``service`` (engine injected)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(heartbeat_loop(config, service)) if register else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="fastchat-lite worker", lifespan=lifespan)
    app.state.service = service
    app.state.worker_secret = config.worker_secret
    install_error_handlers(app)
    install_body_limit(app, config.max_body_bytes)
    secret = [Depends(require_worker_secret)]

    @app.post("/worker_generate_stream", dependencies=secret)
    async def generate_stream(req: GenerateRequest, request: Request) -> StreamingResponse:
        service: StreamingService = request.app.state.service
        prepared = await service.prepare_off_loop(req)
        lines = service.stream(prepared, whole=not req.stream)
        return StreamingResponse(lines, media_type="application/x-ndjson")

    @app.get("/worker_status", dependencies=secret)
    async def worker_status(request: Request) -> WorkerStatus:
        return request.app.state.service.status()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
