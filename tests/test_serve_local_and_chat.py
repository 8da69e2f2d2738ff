"""`serve local` starts a ready stack and stops all of it; the terminal chat keeps history."""

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

from serve.chat_cli import chat_loop
from serve.local import free_port


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


@pytest.mark.slow
def test_serve_local_is_ready_when_the_model_is_listed_and_sigterm_stops_every_child(
    tiny_model_dir,
):
    port = free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "fastchat_lite.cli", "serve", "local", "--model",
         str(tiny_model_dir), "--port", str(port), "--no-web"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline, models = time.monotonic() + 120, []
        while not models and time.monotonic() < deadline:
            assert launcher.poll() is None, "serve local exited early"
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]
            except httpx.HTTPError:
                time.sleep(0.3)
        assert [m["id"] for m in models] == [Path(tiny_model_dir).name]
        body = {"model": models[0]["id"], "prompt": "hi", "max_tokens": 3}
        assert httpx.post(f"http://127.0.0.1:{port}/v1/completions", json=body).status_code == 200
        kids = children_of(launcher.pid)
        assert len(kids) == 3  # controller, worker, API
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(20) == 0
        assert not [k for k in kids if alive(k)]
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()


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
    from serve.config import LocalConfig
    from serve.local import build_commands

    monkeypatch.setattr("serve.local.web_available", lambda: True)
    config = LocalConfig(model="/m", vote_file="votes.jsonl", web_port=7999)
    web = build_commands(config, 1, 2)["web"]
    assert web[:2] == ["serve", "web"]
    assert web[web.index("--vote-file") + 1] == "votes.jsonl"
    assert web[web.index("--port") + 1] == "7999"
    assert "web" not in build_commands(LocalConfig(model="/m", no_web=True), 1, 2)
