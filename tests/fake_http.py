"""A stand-in HTTP server on 127.0.0.1 for tests of clients that talk to our internal servers.

The serve client speaks real HTTP (aiohttp), so a fake controller or worker has to be a real
server: this one runs the stdlib's threading HTTP server on a free port and answers every
request with ``reply(request)``; every request is recorded in ``FakeServer.requests``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, bytes]


def json_reply(payload: Any, status: int = 200) -> Reply:
    return status, json.dumps(payload).encode()


@dataclass
class FakeServer:
    url: str
    requests: list[Seen] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [seen.path for seen in self.requests]


@contextlib.contextmanager
def fake_server(reply: Callable[[Seen], Reply]) -> Iterator[FakeServer]:
    """Serve ``reply`` until the block ends; yields the server (its ``url`` has no slash)."""
    record: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real servers do

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
            )
            record.append(seen)
            status, body = reply(seen)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:  # keep pytest's output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeServer(f"http://127.0.0.1:{server.server_address[1]}", record)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
