"""`serve local` starts a ready stack and stops all of it, every child getting the options meant
for it (flags or YAML); the terminal chat keeps history."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fastchat_lite.cli import build_parser
from fastchat_lite.config import build_config, config_to_argv
from fastchat_lite.processes import free_port
from serve.chat_cli import chat_loop
from serve.config import (
    ApiConfig,
    ControllerConfig,
    LocalConfig,
    WebConfig,
    WorkerConfig,
    secrets_from_env,
)
from serve.local import build_commands, child_configs, child_env

CHILD_CONFIGS = {
    "controller": ControllerConfig, "worker": WorkerConfig, "api": ApiConfig, "web": WebConfig,
}  # fmt: skip


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Launcher:
    """A running `serve local --no-web` and the file its log (stdout and stderr) goes to."""

    def __init__(self, model_dir: Path, log_path: Path, *flags: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fastchat_lite.cli", "serve", "local", "--model",
                 str(model_dir), "--port", str(self.port), "--no-web", *flags],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.model = model_dir.name  # the served name: the model directory's

    def models(self) -> list[str]:
        try:
            return [m["id"] for m in httpx.get(f"{self.url}/models").json()["data"]]
        except httpx.HTTPError:
            return []

    def complete(self) -> httpx.Response:
        body = {"model": self.model, "prompt": "hi", "max_tokens": 3}
        return httpx.post(f"{self.url}/completions", json=body, timeout=30)

    def child(self, command: str) -> int:
        """The pid of the `serve COMMAND` child."""
        for pid in children_of(self.proc.pid):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if [b"serve", command.encode()] == argv[argv.index(b"serve") :][:2]:
                return pid
        raise AssertionError(f"no live {command} child")


@pytest.fixture(scope="module")
def launcher(tiny_model_dir, tmp_path_factory):
    """One `serve local` for the module's tests, in order: ready, survives, stops."""
    running = Launcher(tiny_model_dir, tmp_path_factory.mktemp("serve-local") / "log.txt")
    try:
        deadline = time.monotonic() + 120
        while not running.models() and time.monotonic() < deadline:
            assert running.proc.poll() is None, running.log_path.read_text()
            time.sleep(0.3)
        yield running
    finally:
        if running.proc.poll() is None:
            os.killpg(running.proc.pid, signal.SIGKILL)
            running.proc.wait()


@pytest.mark.slow
def test_serve_local_is_ready_when_the_model_is_listed(launcher):
    assert launcher.models() == [launcher.model]
    assert launcher.complete().status_code == 200
    assert len(children_of(launcher.proc.pid)) == 3  # controller, worker, API


@pytest.mark.slow
def test_serve_local_restarts_a_killed_worker_and_answers_503_with_retry_after_meanwhile(
    launcher,
):
    worker = launcher.child("worker")
    os.kill(worker, signal.SIGKILL)
    meanwhile = launcher.complete()
    assert meanwhile.status_code == 503
    assert meanwhile.json()["error"]["code"] == "no_worker_available"
    assert int(meanwhile.headers["retry-after"]) > 0
    deadline = time.monotonic() + 60
    while launcher.complete().status_code != 200:
        assert launcher.proc.poll() is None, "serve local stopped instead of restarting"
        assert time.monotonic() < deadline, "the worker was not restarted"
        time.sleep(0.3)
    assert launcher.child("worker") != worker
    log = launcher.log_path.read_text()
    assert f"the worker (pid {worker}) killed by SIGKILL; restarting it" in log


@pytest.mark.slow
def test_sigterm_stops_serve_local_and_every_child(launcher):
    kids = children_of(launcher.proc.pid)
    assert len(kids) == 3
    launcher.proc.send_signal(signal.SIGTERM)
    assert launcher.proc.wait(20) == 0
    assert not [k for k in kids if alive(k)]


def test_chat_keeps_history_and_clear_forgets_it(capsys):
    seen: list[list[dict[str, str]]] = []

    async def stream(messages):
        seen.append([dict(m) for m in messages])
        for piece in ("Hel", "lo"):
            yield piece

    lines = iter(["first", "second", "/clear", "third", "/exit"])
    asyncio.run(chat_loop(stream, "be nice", lambda _prompt: next(lines)))
    assert [len(m) for m in seen] == [2, 4, 2]
    assert seen[1][2] == {"role": "assistant", "content": "Hello"}
    assert seen[2][1]["content"] == "third"
    assert "Hello" in capsys.readouterr().out


def test_chat_ends_on_ctrl_d():
    def eof(_prompt: str) -> str:
        raise EOFError

    async def never(_messages):
        raise AssertionError("no request expected")
        yield ""

    asyncio.run(chat_loop(never, None, eof))


def test_serve_local_passes_the_vote_file_to_the_web_demo(monkeypatch):
    monkeypatch.setattr("serve.local.web_available", lambda: True)
    config = LocalConfig(
        worker=WorkerConfig(model="/m"), web=WebConfig(vote_file="votes.jsonl"), web_port=7999
    )
    web = build_commands(config, 1, 2)["web"]
    assert web[:2] == ["serve", "web"]
    assert web[web.index("--vote-file") + 1] == "votes.jsonl"
    assert web[web.index("--port") + 1] == "7999"
    no_web = LocalConfig(worker=WorkerConfig(model="/m"), no_web=True)
    assert "web" not in build_commands(no_web, 1, 2)


def _children_as_parsed(config: LocalConfig, controller_port: int, worker_port: int) -> dict:
    """Each child's config as that child's own `serve` command would build it from its argv
    and the environment `serve local` gives it."""
    commands = build_commands(config, controller_port, worker_port)
    env = child_env(config, base={})
    return {
        name: secrets_from_env(
            build_config(CHILD_CONFIGS[name], build_parser().parse_args(argv)), env
        )
        for name, argv in commands.items()
    }


def test_serve_local_yaml_reaches_each_child_and_flags_override_it(tmp_path, monkeypatch):
    monkeypatch.setattr("serve.local.web_available", lambda: True)
    yaml_file = tmp_path / "local.yaml"
    yaml_file.write_text(
        "model: /models/m\ndtype: bf16\nthreads: 3\ncontext_length: 512\n"
        "worker_secret: s3cret\ndispatch: lottery\napi_key: [k1, k2]\n"
        "vote_file: votes.jsonl\nport: 8101\nweb_port: 8102\n"
    )
    args = build_parser().parse_args(
        ["serve", "local", "--config", str(yaml_file), "--dtype", "fp16", "--host", "0.0.0.0"]
    )
    captured: list[LocalConfig] = []
    monkeypatch.setattr("serve.local.run_local", lambda config: captured.append(config) or 0)
    assert args.run(args) == 0
    children = _children_as_parsed(captured[0], 7001, 7002)
    controller, worker, api, web = (children[n] for n in ("controller", "worker", "api", "web"))
    assert (controller.host, controller.port, controller.dispatch) == ("127.0.0.1", 7001, "lottery")
    assert (worker.model, worker.dtype, worker.threads, worker.context_length) == (
        "/models/m", "fp16", 3, 512,
    )  # fmt: skip
    assert {c.worker_secret for c in children.values()} == {"s3cret"}
    assert (worker.host, worker.port) == ("127.0.0.1", 7002)  # internal: loopback only
    assert worker.controller == api.controller == web.controller == "http://127.0.0.1:7001"
    assert (api.host, api.port, api.api_key) == ("0.0.0.0", 8101, ["k1", "k2"])
    assert (web.host, web.port, web.vote_file) == ("0.0.0.0", 8102, "votes.jsonl")


def test_every_worker_option_works_under_serve_local(monkeypatch):
    monkeypatch.setattr("serve.local.web_available", lambda: False)
    worker = WorkerConfig(
        model="/m", model_name="n", template="vicuna", worker_address="http://10.0.0.2:9",
        max_batch_size=3, device="cuda", dtype="bf16", backend="vllm", context_length=99,
        threads=2, upstream="http://10.0.0.3:8000/v1", upstream_model="m", upstream_api_key="k",
        repack="off",
    )  # fmt: skip
    config = LocalConfig(
        host="0.0.0.0",
        worker=worker,
        controller=ControllerConfig(worker_secret="-dash"),
        api=ApiConfig(max_body_bytes=1000),  # the worker's cap follows the API's
    )
    # the flags of `serve local` express all of it ...
    local_args = build_parser().parse_args(["serve", "local", *config_to_argv(config)])
    assert build_config(LocalConfig, local_args) == config
    # ... and each child's argv rebuilds its config, every WorkerConfig field included
    expected = child_configs(config, 7001, 7002)
    assert _children_as_parsed(config, 7001, 7002) == expected
    defaults = vars(WorkerConfig())
    unchanged = {k for k, v in vars(expected["worker"]).items() if v == defaults[k]}
    pinned = {"host", "insecure"}  # serve local keeps the worker on loopback, whatever --host says
    assert unchanged == pinned, "give every WorkerConfig field a non-default value in this test"


def test_serve_controller_takes_a_yaml_config_and_flags_win(tmp_path, monkeypatch):
    yaml_file = tmp_path / "controller.yaml"
    yaml_file.write_text("port: 9001\ndispatch: lottery\nheartbeat_expiry: 5\n")
    args = build_parser().parse_args(
        ["serve", "controller", "--config", str(yaml_file), "--port", "9002"]
    )
    seen: dict[str, object] = {}
    monkeypatch.setattr("serve.cluster.controller.create_app", lambda config: config)
    monkeypatch.setattr("serve.cli.serve_app", lambda app, host, port: seen.update(app=app) or 0)
    assert args.run(args) == 0
    assert seen["app"] == ControllerConfig(port=9002, dispatch="lottery", heartbeat_expiry=5.0)
