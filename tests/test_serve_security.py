"""The internal servers (controller, workers) are not a way around the API key: with a worker
secret every route but /health needs it, `serve local` keeps them on loopback with a secret of
its own that `ps` does not show, and neither starts beyond loopback without a secret."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from test_serve_hardening import FakeTokenizer, fake_service
from test_serve_local_and_chat import Launcher, children_of

from serve.cluster.client import ServeClient
from serve.cluster.controller import create_app as create_controller_app
from serve.cluster.worker import create_app as create_worker_app
from serve.config import WORKER_SECRET_ENV, ControllerConfig, WorkerConfig

SECRET = "s3cret"
GOOD = {"Authorization": f"Bearer {SECRET}"}
WORKER = {"worker_address": "http://127.0.0.1:9", "model_names": ["m"]}

# Every route of the controller but /health: (method, path, body).
CONTROLLER_ROUTES = [
    ("POST", "/register_worker", WORKER),
    ("POST", "/heartbeat", {"worker_address": WORKER["worker_address"]}),
    ("POST", "/list_models", {}),
    ("POST", "/get_worker_address", {"model": "m"}),
    ("POST", "/report_failure", {"worker_address": "http://127.0.0.1:10"}),
    ("GET", "/status", None),
]
WORKER_ROUTES = [
    ("POST", "/worker_generate_stream", {"prompt": "hi"}),
    ("GET", "/worker_status", None),
]


def _call(client: TestClient, method: str, path: str, body, headers=None) -> httpx.Response:
    return client.request(method, path, json=body, headers=headers or {})


@pytest.mark.parametrize(("method", "path", "body"), CONTROLLER_ROUTES)
def test_every_controller_route_but_health_needs_the_worker_secret(method, path, body):
    client = TestClient(create_controller_app(ControllerConfig(worker_secret=SECRET)))
    assert _call(client, "POST", "/register_worker", WORKER, GOOD).status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = _call(client, method, path, body, headers)
        assert response.status_code == 401, (path, headers)
        assert response.json()["error"]["type"] == "authentication_error"
    assert _call(client, method, path, body, GOOD).status_code == 200
    assert client.get("/health").status_code == 200  # probes need no secret


@pytest.mark.parametrize(("method", "path", "body"), WORKER_ROUTES)
def test_every_worker_route_but_health_needs_the_worker_secret(method, path, body):
    config = WorkerConfig(worker_secret=SECRET)
    app = create_worker_app(config, service=fake_service(FakeTokenizer()), register=False)
    client = TestClient(app)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = _call(client, method, path, body, headers)
        assert response.status_code == 401, (path, headers)
        assert response.json()["error"]["type"] == "authentication_error"
    assert _call(client, method, path, body, GOOD).status_code == 200
    assert client.get("/health").status_code == 200


def test_the_serve_client_sends_the_secret_to_the_controller_and_the_worker():
    import asyncio

    from fake_http import fake_server, json_reply

    def cluster(seen) -> tuple[int, bytes]:
        if seen.path == "/get_worker_address":
            return json_reply({"address": server.url, "context_length": 64})
        line = {"text": "ok", "finish_reason": "stop", "completion_tokens": 1}
        return 200, json.dumps(line).encode() + b"\n"

    async def reply() -> list[str]:
        client = ServeClient(server.url, worker_secret=SECRET)
        try:
            chat = client.stream_chat("m", [{"role": "user", "content": "x"}])
            return [delta async for delta in chat]
        finally:
            await client.aclose()

    with fake_server(cluster) as server:
        assert asyncio.run(reply()) == ["ok"]
    assert [(seen.path, seen.headers.get("authorization")) for seen in server.requests] == [
        ("/get_worker_address", f"Bearer {SECRET}"),
        ("/worker_generate_stream", f"Bearer {SECRET}"),
    ]


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fastchat_lite.cli", "serve", *args]
    environ = {k: v for k, v in os.environ.items() if k != WORKER_SECRET_ENV}
    return subprocess.run(
        command, env={**environ, **(env or {})}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args",
    [["controller", "--host", "0.0.0.0"], ["worker", "--model", "/no/model", "--host", "0.0.0.0"]],
    ids=["controller", "worker"],
)
def test_an_internal_server_on_a_public_address_without_a_secret_refuses_to_start(args):
    result = _serve(*args, "--port", "1")  # refused before it binds (port 1 would fail)
    assert result.returncode == 2, result.stderr
    assert f"refusing to start the {args[0]} on 0.0.0.0 without a worker secret" in result.stderr
    assert "--insecure" in result.stderr and WORKER_SECRET_ENV in result.stderr


def test_insecure_or_a_secret_from_the_environment_lets_the_controller_start(monkeypatch):
    from fastchat_lite.cli import build_parser

    started: list[ControllerConfig] = []
    monkeypatch.setattr("serve.cluster.controller.create_app", lambda config: config)
    monkeypatch.setattr("serve.cli.serve_app", lambda app, host, port: started.append(app) or 0)
    monkeypatch.delenv(WORKER_SECRET_ENV, raising=False)
    for argv, env in [(["--insecure"], None), ([], "from-env")]:
        if env:
            monkeypatch.setenv(WORKER_SECRET_ENV, env)
        args = build_parser().parse_args(["serve", "controller", "--host", "0.0.0.0", *argv])
        assert args.run(args) == 0
    assert [(c.insecure, c.worker_secret) for c in started] == [(True, None), (False, "from-env")]


# ---------------------------------------------------------------- serve local, real processes


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on (IPv4, /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and inode in inodes:  # 0A: LISTEN
            address, port = local.split(":")
            ip = socket.inet_ntoa(bytes.fromhex(address)[::-1])
            found.add((ip, int(port, 16)))
    return found


@pytest.fixture(scope="module")
def public_launcher(tiny_model_dir, tmp_path_factory):
    """`serve local --host 0.0.0.0`, as sky/launch_serve.sh runs it."""
    log = tmp_path_factory.mktemp("serve-local-public") / "log.txt"
    env_before = os.environ.pop(WORKER_SECRET_ENV, None)
    running = Launcher(tiny_model_dir, log, "--host", "0.0.0.0")
    try:
        deadline = time.monotonic() + 120
        while not running.models() and time.monotonic() < deadline:
            assert running.proc.poll() is None, log.read_text()
            time.sleep(0.3)
        yield running
    finally:
        if env_before is not None:
            os.environ[WORKER_SECRET_ENV] = env_before
        if running.proc.poll() is None:
            os.killpg(running.proc.pid, signal.SIGTERM)
            running.proc.wait(20)


@pytest.mark.slow
def test_serve_local_on_all_interfaces_keeps_the_controller_and_worker_on_loopback(
    public_launcher,
):
    sockets = {name: listening(public_launcher.child(name)) for name in ("controller", "worker")}
    sockets["api"] = listening(public_launcher.child("api"))
    assert sockets["api"] == {("0.0.0.0", public_launcher.port)}
    for name in ("controller", "worker"):
        assert sockets[name] and {ip for ip, _ in sockets[name]} == {"127.0.0.1"}, sockets
    assert public_launcher.complete().status_code == 200


@pytest.mark.slow
def test_serve_local_makes_a_secret_its_internal_servers_require_and_ps_does_not_show(
    public_launcher,
):
    pids = children_of(public_launcher.proc.pid)
    assert len(pids) == 3
    secrets = set()
    for pid in pids:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"secret" not in argv
        environ = dict(
            item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )  # fmt: skip
        secrets.add(environ[WORKER_SECRET_ENV.encode()])
    (secret,) = secrets
    assert len(secret) >= 32  # secrets.token_urlsafe(32)
    ((_, controller),) = listening(public_launcher.child("controller"))
    ((_, worker),) = listening(public_launcher.child("worker"))
    headers = {"Authorization": f"Bearer {secret.decode()}"}
    for url in (
        f"http://127.0.0.1:{controller}/status",
        f"http://127.0.0.1:{worker}/worker_status",
    ):
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers=headers).status_code == 200
    rogue = {"worker_address": "http://127.0.0.1:9", "model_names": ["evil"]}
    register = f"http://127.0.0.1:{controller}/register_worker"
    assert httpx.post(register, json=rogue).status_code == 401
    generate = {"prompt": "hi", "params": {"max_tokens": 2}}
    url = f"http://127.0.0.1:{worker}/worker_generate_stream"
    assert httpx.post(url, json=generate).status_code == 401
