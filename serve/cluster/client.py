"""Async client for the controller + worker path, shared by the API server, web demo and chat CLI.

A request asks the controller for a worker address, then streams NDJSON
:class:`~serve.cluster.protocol.GenerateChunk` lines from that worker. A worker that refuses the
connection is reported to the controller (which drops it at once) and the request is retried on
another worker, so a dead worker costs one fast round trip, not a timeout. Closing a stream early
closes the HTTP response, which makes the worker cancel the sequence and free its slot.
With ``worker_secret``, every call to the controller and the workers carries it.

These two hops sit on every request's path, so they use aiohttp: on this project's 2-core
benchmark box a round trip through it costs about half of httpx's, which took the API's added
latency from ~6 ms to ~3.5 ms (docs/benchmarks.md, "Serving").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing, suppress
from typing import Any

import aiohttp
from pydantic import ValidationError

from serve.auth import worker_secret_headers
from serve.cluster.protocol import (
    GenerateChunk,
    GenerateRequest,
    ListModelsResponse,
    WorkerAddressResponse,
)
from serve.config import DEFAULT_TEMPERATURE
from serve.errors import NoWorkerError, ServeError, WorkerFailedError
from serve.schemas import ErrorResponse, SamplingParams

CONNECT_ATTEMPTS = 3  # workers tried per request when connections are refused
MAX_CONNECTIONS = 1024  # to the controller and all workers together
# Below uvicorn's 5 s keep-alive, so an idle connection is dropped here before the server
# closes it under a request that is reusing it.
KEEPALIVE_S = 4.0
# A whole-reply chunk is at most JOINED_FLUSH_S of generation; the line limit is twice this.
READ_BUFFER_BYTES = 1 << 20
JSON_HEADERS = {"Content-Type": "application/json"}
# What a broken connection, a dead peer or a read timeout raise.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


def _raise_for_error_body(status: int, body: bytes, who: str) -> None:
    if status == 200:
        return
    try:
        info = ErrorResponse.model_validate_json(body).error
    except ValidationError:
        raise ServeError(
            f"{who} answered HTTP {status}: {body[:200].decode(errors='replace')}",
            status_code=502,
        ) from None
    raise ServeError.from_info(info, status)


class ServeClient:
    """Talks to one controller and, through it, to the workers.

    The aiohttp session is made on first use inside the running event loop (and again if a
    caller moves to another loop, as test clients do); :meth:`aclose` closes it.
    """

    def __init__(
        self,
        controller_url: str,
        *,
        timeout: float = 60.0,
        worker_secret: str | None = None,
    ) -> None:
        self.controller_url = controller_url.rstrip("/")
        self.timeout = timeout
        self._headers = {**JSON_HEADERS, **worker_secret_headers(worker_secret)}
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S
                ),
                timeout=aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=self.timeout),
                headers=self._headers,
                read_bufsize=READ_BUFFER_BYTES,
            )
            self._session_loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def _controller(self, path: str, payload: dict[str, Any]) -> bytes:
        try:
            async with self._http().post(f"{self.controller_url}{path}", json=payload) as response:
                body = await response.read()
        except TRANSPORT_ERRORS as exc:
            raise ServeError(
                f"controller at {self.controller_url} is unreachable ({type(exc).__name__}); "
                "is `fastchat-lite serve controller` running?",
                status_code=503,
                code="controller_unreachable",
            ) from None
        _raise_for_error_body(response.status, body, "controller")
        return body

    async def list_models(self) -> list[str]:
        """Names of the models that at least one live worker serves."""
        body = await self._controller("/list_models", {})
        return ListModelsResponse.model_validate_json(body).models

    async def get_worker(self, model: str) -> WorkerAddressResponse:
        """Raises :class:`ModelNotFoundError` (never served) or :class:`NoWorkerError`."""
        body = await self._controller("/get_worker_address", {"model": model})
        return WorkerAddressResponse.model_validate_json(body)

    async def report_failure(self, worker_address: str) -> None:
        """Tell the controller a worker is unreachable so it stops dispatching to it."""
        with suppress(ServeError):  # the controller is down too; its expiry will catch up
            await self._controller("/report_failure", {"worker_address": worker_address})

    async def _report_if_dead(self, worker_address: str) -> bool:
        """After a request broke, drop the worker only if it no longer answers (True): one
        failed request must not take a healthy worker out of rotation."""
        try:
            health = self._http().get(
                f"{worker_address}/health", timeout=aiohttp.ClientTimeout(total=2.0)
            )
            async with health as response:
                if response.status == 200:
                    return False
        except TRANSPORT_ERRORS:
            pass
        await self.report_failure(worker_address)
        return True

    async def generate_stream(
        self, model: str, request: GenerateRequest
    ) -> AsyncIterator[GenerateChunk]:
        """Chunks of one sequence; the last has ``finish_reason``. Raises :class:`ServeError`."""
        payload = request.model_dump_json(exclude_none=True)
        for _attempt in range(CONNECT_ATTEMPTS):
            worker = await self.get_worker(model)
            url = f"{worker.address}/worker_generate_stream"
            try:
                response = await self._http().post(url, data=payload)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
                await self.report_failure(worker.address)  # nothing was sent: try another
                continue
            except TRANSPORT_ERRORS as exc:
                # No response yet: a kept-alive connection to a worker that has since died
                # (kill -9, restart) fails on reuse like this. Try another if it is dead.
                if not await self._report_if_dead(worker.address):
                    raise WorkerFailedError(
                        f"worker {worker.address} failed before answering "
                        f"({type(exc).__name__}); please retry"
                    ) from None
                continue
            async with response:  # leaving early closes the connection: the worker cancels
                if response.status != 200:
                    _raise_for_error_body(response.status, await response.read(), "worker")
                async for chunk in self._read_chunks(response, worker.address):
                    yield chunk
                return
        raise NoWorkerError(f"no reachable worker serves model {model!r}; try again shortly")

    async def _read_chunks(
        self, response: aiohttp.ClientResponse, address: str
    ) -> AsyncIterator[GenerateChunk]:
        try:
            async for line in response.content:
                if not line.strip():
                    continue
                chunk = GenerateChunk.model_validate_json(line)
                chunk.raise_if_failed()
                yield chunk
                if chunk.finish_reason is not None:
                    return
        except (*TRANSPORT_ERRORS, ValueError) as exc:  # ValidationError is a ValueError
            await self._report_if_dead(address)
            raise WorkerFailedError(
                f"worker {address} failed mid-request ({type(exc).__name__}); please retry"
            ) from None
        await self._report_if_dead(address)
        raise WorkerFailedError(f"worker {address} closed the stream before finishing")

    async def stream_chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        temperature: float = DEFAULT_TEMPERATURE,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> AsyncIterator[str]:
        """Text deltas of the assistant's reply to OpenAI-style ``messages``."""
        try:
            request = GenerateRequest(
                messages=messages,
                params=SamplingParams(
                    temperature=temperature,
                    top_p=top_p,
                    max_tokens=max_tokens,
                    stop=stop or [],
                    seed=seed,
                ),
            )
        except ValidationError as exc:
            message = f"invalid chat request: {exc.errors()[0]['msg']}"
            raise ServeError(message, status_code=400) from None
        async with aclosing(self.generate_stream(model, request)) as chunks:
            async for chunk in chunks:
                if chunk.text:
                    yield chunk.text
