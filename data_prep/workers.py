"""An ordered parallel map over chunks in worker processes, safe to interrupt.

``data clean`` needs results back in input order, bounded memory in flight, and workers that
neither print tracebacks on Ctrl-C / ``kill`` nor outlive their parent; ``multiprocessing.Pool``
gives none of the last two and can deadlock its teardown when a worker is killed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.processes import die_with_parent_hook

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _worker_loop(
    tasks: Any,
    results: Any,
    fn: Callable[[list[Any]], list[Any]],
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    parent: int,
) -> None:
    """One worker process: ``fn`` over the chunks of ``tasks`` until ``None``, results (or the
    exception raised) sent back in order. Ctrl-C and ``kill`` are the parent's to handle: a
    worker ignores SIGINT and dies quietly on SIGTERM instead of printing a traceback, and
    gets SIGTERM when the parent dies (Linux), even by SIGKILL: no orphan waits forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    hook = die_with_parent_hook()
    if hook is not None:
        hook()
    if os.getppid() != parent:  # it died before the hook was set
        return
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by the parent at start
    initializer(*initargs)
    while (chunk := tasks.get()) is not None:
        try:
            reply: tuple[bool, Any] = (True, fn(chunk))
        except Exception as exc:  # re-raised in the parent, like a single-process run
            reply = (False, exc)
        try:
            results.send(reply)
        except Exception as exc:  # an unpicklable exception or result
            results.send((False, RuntimeError(f"worker could not send its result: {exc!r}")))


def map_ordered(
    fn: Callable[[list[Any]], list[Any]],
    chunks: Iterable[list[Any]],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
) -> Iterator[Any]:
    """``fn`` over chunks in ``workers`` processes, results in input order, bounded in flight.

    Chunk k goes to worker k % workers, each worker with its own task queue and result pipe,
    so results come back in order by reading the pipes in turn, and no lock is shared between
    processes: a worker killed by a signal cannot deadlock the others or the teardown (as it
    can with ``multiprocessing.Pool``). When the caller stops (an error, Ctrl-C, ``kill``),
    the workers are killed at once. Raises :class:`FastChatLiteError` if a worker dies.
    """
    if workers <= 1:
        initializer(*initargs)
        for chunk in chunks:
            yield from fn(chunk)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    procs, tasks, results = [], [], []
    # Blocked while starting, so no worker runs the parent's SIGTERM handler before its own.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        for _ in range(workers):
            task_queue = ctx.Queue()  # its feeder thread: put() never blocks the parent
            reader, writer = ctx.Pipe(duplex=False)
            args = (task_queue, writer, fn, initializer, initargs, os.getpid())
            proc = ctx.Process(target=_worker_loop, args=args, daemon=True)
            proc.start()
            writer.close()
            procs.append(proc)
            tasks.append(task_queue)
            results.append(reader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        pending: deque[int] = deque()  # the worker of each chunk in flight, oldest first
        for k, chunk in enumerate(chunks):
            tasks[k % workers].put(chunk)
            pending.append(k % workers)
            if len(pending) >= 4 * workers:
                yield from _result(procs[pending[0]], results[pending.popleft()])
        while pending:
            yield from _result(procs[pending[0]], results[pending.popleft()])
        for task_queue in tasks:
            task_queue.put(None)
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()
        for task_queue in tasks:
            task_queue.cancel_join_thread()  # its reader is gone: do not wait to flush
            task_queue.close()


def _result(proc: Any, reader: Any) -> list[Any]:
    """The next result of ``proc`` from its pipe; raises what the worker raised."""
    from multiprocessing.connection import wait

    wait([reader, proc.sentinel])
    try:
        ok, value = reader.recv()
    except EOFError:
        proc.join()
        raise FastChatLiteError(
            f"worker process {proc.pid} ended unexpectedly (exit code {proc.exitcode}); "
            "the same command with --resume continues the run"
        ) from None
    if not ok:
        raise value
    return value


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
