"""Child processes the way every launcher here needs them: free ports, children that die with
their parent, waiting until a server answers, and stopping with a grace period.

``serve local``, the quickstart and the benchmarks all start real server processes; keeping one
copy of these rules means a fix (say, to how a stuck child is killed) reaches all of them.
Standard library only, so importing it costs nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from fastchat_lite.errors import FastChatLiteError

T = TypeVar("T")

LOOPBACK = "127.0.0.1"


class ProcessExitedError(FastChatLiteError):
    """A child we were waiting on exited before it became ready."""


class NotReadyError(FastChatLiteError):
    """A child stayed up but never passed its readiness probe within the timeout."""


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def port_or_free(requested: int, host: str = LOOPBACK) -> int:
    """``requested`` if it can be bound now, else any free port (callers tell the user which)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, requested))
        except OSError:
            return free_port(host)
    return requested


def cli_argv(args: Sequence[Any]) -> list[str]:
    """The command line that runs ``fastchat-lite ARGS`` with this very interpreter."""
    return [sys.executable, "-m", "fastchat_lite.cli", *map(str, args)]


def offline_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for child commands: no hub access, no tokenizer pools fighting torch."""
    env = dict(os.environ if base is None else base)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child SIGTERM when its parent dies (Linux; None elsewhere),
    so a launcher killed with SIGKILL leaves no server or training run behind."""
    return _die_with_parent if sys.platform.startswith("linux") else None


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    log: IO[bytes] | None = None,
    own_group: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a child that dies with us.

    ``log`` receives stdout and stderr together (None: inherit ours). ``own_group`` puts the
    child in a new session, so :func:`stop` can signal it together with its own children.
    """
    return subprocess.Popen(
        list(argv),
        env=None if env is None else dict(env),
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=own_group,
        preexec_fn=die_with_parent_hook(),
    )


def exit_reason(returncode: int) -> str:
    """How a child ended, for a log line: ``exited with code 1`` or ``killed by SIGKILL``."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"


def wait_until(
    probe: Callable[[], T | None],
    children: Mapping[str, subprocess.Popen[Any]],
    what: str,
    *,
    timeout: float,
    interval: float = 0.3,
    describe_exit: Callable[[str, int], str] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy, and return that.

    Raises :class:`ProcessExitedError` as soon as any of ``children`` exits (the message from
    ``describe_exit(name, code)`` when given) and :class:`NotReadyError` after ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in children.items():
            if proc.poll() is not None:
                message = (
                    describe_exit(name, proc.returncode)
                    if describe_exit
                    else f"the {name} process exited with code {proc.returncode}"
                )
                raise ProcessExitedError(message)
        if found := probe():
            return found
        time.sleep(interval)
    raise NotReadyError(f"{what} was not ready after {timeout:.0f} s")


def _signal(proc: subprocess.Popen[Any], sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


def stop(
    processes: Iterable[subprocess.Popen[Any]], *, grace: float = 5.0, group: bool = False
) -> None:
    """SIGTERM every live process (its whole group with ``group``), SIGKILL what is still up
    after ``grace`` seconds, and reap them all. SIGTERM, not SIGINT: a background child of a
    non-interactive shell ignores SIGINT."""
    procs = [p for p in processes if p.poll() is None]
    for proc in procs:
        _signal(proc, signal.SIGTERM, group)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        if proc.poll() is None:
            _signal(proc, signal.SIGKILL, group)
            proc.wait()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every cleanup (children, temp files, worker pools) runs;
    ``except KeyboardInterrupt`` handles both."""


EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process killed by TERM


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated`, so ``kill`` stops us like Ctrl-C and
    the caller's cleanup runs. Once: a second SIGTERM during that cleanup is ignored (SIGKILL
    still ends the process). Outside the main thread, where handlers cannot be set, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fetch_json(
    url: str,
    *,
    payload: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 2.0,
) -> Any | None:
    """GET ``url`` (POST ``payload`` as JSON when given) and parse the body; None when the server
    is not answering yet or answers with an error, which is what a readiness probe wants."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def listed_models(api_base: str, api_key: str | None = None, timeout: float = 2.0) -> list[str]:
    """Ids from an OpenAI-compatible ``GET {api_base}/models``; [] while it is not up yet."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    body = fetch_json(f"{api_base.rstrip('/')}/models", headers=headers, timeout=timeout)
    try:
        return [entry["id"] for entry in body["data"]]
    except (TypeError, KeyError):
        return []
