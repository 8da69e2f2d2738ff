"""The OpenAI endpoints' logic: requests in, responses or SSE streams out, via :class:`ServeClient`.

A request becomes one worker job per choice (``n`` per prompt). Non-streaming requests run the
jobs concurrently and aggregate them. Streaming requests first await every job's first chunk, so
a bad request (unknown model, prompt too long, no worker) is still answered with its HTTP status;
after the headers are sent, a failure becomes an SSE ``{"error": ...}`` event before ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from serve.cluster.client import ServeClient
from serve.cluster.protocol import GenerateChunk, GenerateRequest
from serve.errors import ServeError, WorkerFailedError
from serve.openai.metrics import ApiMetrics
from serve.openai.schemas import (
    ChatChunkChoice,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    ModelCard,
    ModelList,
    ResponseMessage,
    UsageInfo,
)
from serve.schemas import ErrorResponse, FinishReason, new_id

DONE = "data: [DONE]\n\n"


@dataclass
class Job:
    index: int  # choice index in the response
    prompt_index: int  # which prompt (usage counts each prompt once)
    request: GenerateRequest
    text: list[str] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def record(self, chunk: GenerateChunk) -> None:
        self.text.append(chunk.text)
        self.prompt_tokens = chunk.prompt_tokens or self.prompt_tokens
        self.completion_tokens = chunk.completion_tokens or self.completion_tokens
        if chunk.finish_reason:
            if chunk.finish_reason == "abort":
                raise WorkerFailedError("the worker aborted the generation (shutting down?)")
            self.finish_reason = chunk.finish_reason


def usage_of(jobs: list[Job]) -> UsageInfo:
    prompts = {job.prompt_index: job.prompt_tokens for job in jobs}
    prompt_tokens = sum(prompts.values())
    completion = sum(job.completion_tokens for job in jobs)
    return UsageInfo(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        total_tokens=prompt_tokens + completion,
    )


def sse(payload: str) -> str:
    return f"data: {payload}\n\n"


class OpenAIService:
    def __init__(self, client: ServeClient, metrics: ApiMetrics) -> None:
        self.client = client
        self.metrics = metrics

    async def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=name) for name in await self.client.list_models()])

    # ------------------------------------------------------------------ chat

    def _chat_jobs(self, req: ChatCompletionRequest) -> list[Job]:
        messages = [m.model_copy() for m in req.messages]
        return [
            Job(i, 0, GenerateRequest(messages=messages, params=req.sampling_params(i)))
            for i in range(req.n)
        ]

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletionResponse:
        jobs = await self._run_all(req.model, self._chat_jobs(req))
        choices = [
            ChatCompletionChoice(
                index=job.index,
                message=ResponseMessage(content="".join(job.text)),
                finish_reason=job.finish_reason,
            )
            for job in jobs
        ]
        return ChatCompletionResponse(model=req.model, choices=choices, usage=usage_of(jobs))

    async def chat_stream(self, req: ChatCompletionRequest) -> AsyncIterator[str]:
        rid, created = new_id("chatcmpl"), int(time.time())

        def chunk(index: int, delta: DeltaMessage, finish: FinishReason | None = None) -> str:
            choice = ChatChunkChoice(index=index, delta=delta, finish_reason=finish)
            body = ChatCompletionChunk(id=rid, created=created, model=req.model, choices=[choice])
            return sse(body.model_dump_json(exclude_none=True))

        def usage(jobs: list[Job]) -> str:
            body = ChatCompletionChunk(
                id=rid, created=created, model=req.model, choices=[], usage=usage_of(jobs)
            )
            return sse(body.model_dump_json(exclude_none=True))

        def delta(job: Job, chunk_: GenerateChunk) -> list[str]:
            out = [chunk(job.index, DeltaMessage(content=chunk_.text))] if chunk_.text else []
            if job.finish_reason:
                out.append(chunk(job.index, DeltaMessage(), job.finish_reason))
            return out

        jobs = self._chat_jobs(req)
        head = [chunk(job.index, DeltaMessage(role="assistant", content="")) for job in jobs]
        return await self._stream(
            req.model, jobs, head, delta, usage if req.include_usage else None
        )

    # ------------------------------------------------------------------ completions

    def _completion_jobs(self, req: CompletionRequest) -> list[Job]:
        return [
            Job(p * req.n + i, p, GenerateRequest(prompt=prompt, params=req.sampling_params(i)))
            for p, prompt in enumerate(req.prompts)
            for i in range(req.n)
        ]

    async def completions(self, req: CompletionRequest) -> CompletionResponse:
        jobs = await self._run_all(req.model, self._completion_jobs(req))
        prompts = req.prompts
        choices = [
            CompletionChoice(
                index=job.index,
                text=(prompts[job.prompt_index] if req.echo else "") + "".join(job.text),
                finish_reason=job.finish_reason,
            )
            for job in jobs
        ]
        return CompletionResponse(model=req.model, choices=choices, usage=usage_of(jobs))

    async def completions_stream(self, req: CompletionRequest) -> AsyncIterator[str]:
        rid, created = new_id("cmpl"), int(time.time())

        def body(choices: list[CompletionChoice], usage: UsageInfo | None = None) -> str:
            response = CompletionResponse(
                id=rid, created=created, model=req.model, choices=choices, usage=usage
            )
            return sse(response.model_dump_json(exclude_none=True))

        def delta(job: Job, chunk_: GenerateChunk) -> list[str]:
            if not chunk_.text and not job.finish_reason:
                return []
            choice = CompletionChoice(
                index=job.index, text=chunk_.text, finish_reason=job.finish_reason
            )
            return [body([choice])]

        def usage(jobs: list[Job]) -> str:
            return body([], usage_of(jobs))

        jobs = self._completion_jobs(req)
        head = []
        if req.echo:
            head = [
                body(
                    [
                        CompletionChoice(
                            index=j.index, text=req.prompts[j.prompt_index], finish_reason=None
                        )
                    ]
                )
                for j in jobs
            ]
        return await self._stream(
            req.model, jobs, head, delta, usage if req.include_usage else None
        )

    # ------------------------------------------------------------------ shared machinery

    async def _run_all(self, model: str, jobs: list[Job]) -> list[Job]:
        """Every job's whole reply (the worker sends each in one chunk)."""

        async def run(job: Job) -> None:
            request = job.request.model_copy(update={"stream": False})
            stream = self.client.generate_stream(model, request)
            async with contextlib.aclosing(stream):
                async for chunk in stream:
                    job.record(chunk)

        tasks = [asyncio.ensure_future(run(job)) for job in jobs]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        self.metrics.observe_tokens(usage_of(jobs))
        return jobs

    async def _stream(
        self,
        model: str,
        jobs: list[Job],
        head: list[str],
        delta: Callable[[Job, GenerateChunk], list[str]],
        usage: Callable[[list[Job]], str] | None,
    ) -> AsyncIterator[str]:
        """Open every job's stream and await its first chunk (errors raise here, before any
        header is sent); return the SSE event iterator for the rest."""
        started = time.perf_counter()
        streams = [self.client.generate_stream(model, job.request) for job in jobs]
        firsts: list[GenerateChunk] = []
        try:
            for stream in streams:
                firsts.append(await anext(stream))
        except BaseException:
            for stream in streams:
                await stream.aclose()
            raise
        self.metrics.observe_ttft(time.perf_counter() - started)
        return self._events(jobs, streams, firsts, head, delta, usage)

    async def _events(
        self,
        jobs: list[Job],
        streams: list[AsyncIterator[GenerateChunk]],
        firsts: list[GenerateChunk],
        head: list[str],
        delta: Callable[[Job, GenerateChunk], list[str]],
        usage: Callable[[list[Job]], str] | None,
    ) -> AsyncIterator[str]:
        queue: asyncio.Queue[tuple[Job, GenerateChunk | None]] = asyncio.Queue()

        async def pump(job: Job, stream: AsyncIterator[GenerateChunk]) -> None:
            async for chunk in stream:
                await queue.put((job, chunk))

        tasks: list[asyncio.Task[None]] = []
        try:
            for event in head:
                yield event
            for job, first in zip(jobs, firsts, strict=True):
                job.record(first)
                for event in delta(job, first):
                    yield event
            tasks = [
                asyncio.ensure_future(pump(job, stream))
                for job, stream in zip(jobs, streams, strict=True)
                if job.finish_reason is None
            ]
            waiter = asyncio.ensure_future(_all_done(list(tasks), queue))
            tasks.append(waiter)
            while (item := await queue.get())[1] is not None:
                job, chunk = item
                job.record(chunk)
                for event in delta(job, chunk):
                    yield event
            waiter.result()  # re-raise a worker failure
            self.metrics.observe_tokens(usage_of(jobs))
            if usage is not None:
                yield usage(jobs)
        except ServeError as exc:
            yield sse(ErrorResponse(error=exc.to_info()).model_dump_json())
        finally:
            for task in tasks:
                task.cancel()
            for stream in streams:
                with contextlib.suppress(Exception):
                    await stream.aclose()
        yield DONE


async def _all_done(tasks: list[asyncio.Task[None]], queue: asyncio.Queue) -> None:
    """Wait for the pumps; a sentinel ends the consumer loop, then failures are re-raised."""
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await queue.put((None, None))
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
