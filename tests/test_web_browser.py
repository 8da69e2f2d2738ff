"""End to end in headless Chromium: controller + worker (tiny model) + web demo, all real.

Set ``FASTCHAT_LITE_SCREENSHOT=PATH`` to keep the screenshot this test takes;
otherwise it goes to the test's tmp dir.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium is not installed at /usr/bin/chromium (run `make install-browser`)",
    ),
]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODEL_NAME = "tiny-chat"
QUESTION = "In HTML, what does <img src=x onerror=alert(1)> do?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(args: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """Start ``fastchat-lite <args>``; always stop it, and show its log if the test failed."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastchat_lite", *args], stdout=out, stderr=out, env=env
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(check, what: str, procs: list[subprocess.Popen], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args} exited with {proc.returncode} ({what})"
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def web_url(tiny_model_dir: Path, tmp_path: Path) -> Iterator[str]:
    c_port, w_port, web_port = free_port(), free_port(), free_port()
    controller = f"http://127.0.0.1:{c_port}"
    with contextlib.ExitStack() as stack:
        commands = {
            "controller": ["controller", "--port", str(c_port)],
            "worker": ["worker", "--model", str(tiny_model_dir), "--model-name", MODEL_NAME,
                       "--controller", controller, "--port", str(w_port), "--threads", "1"],
            "web": ["web", "--controller", controller, "--port", str(web_port)],
        }  # fmt: skip
        procs = [
            stack.enter_context(running(["serve", *args], tmp_path / f"{name}.log"))
            for name, args in commands.items()
        ]
        try:
            wait_until(
                lambda: (
                    MODEL_NAME
                    in httpx.post(f"{controller}/list_models", trust_env=False).json()["models"]
                ),
                "the worker to register",
                procs,
            )
            url = f"http://127.0.0.1:{web_port}/"
            wait_until(
                lambda: httpx.get(url, trust_env=False).status_code == 200, "the web demo", procs
            )
            yield url
        finally:
            for name in commands:
                log = (tmp_path / f"{name}.log").read_text(errors="replace")
                print(f"--- {name} log (tail)\n{log[-3000:]}")


def bot_texts_js() -> str:
    """Record every distinct text the assistant bubble shows, to prove it grows (streams)."""
    return """() => {
        window.__seen = [];
        const record = () => {
            const bots = document.querySelectorAll('#fcl-chatbot [data-testid="bot"]');
            const text = bots.length ? bots[bots.length - 1].innerText : '';
            if (text && window.__seen[window.__seen.length - 1] !== text) {
                window.__seen.push(text);
                window.__changed = Date.now();
            }
        };
        new MutationObserver(record).observe(document.querySelector('#fcl-chatbot'),
            {childList: true, subtree: true, characterData: true});
    }"""


def test_browser_picks_model_streams_reply_and_clears(web_url: str, tmp_path: Path) -> None:
    from playwright import sync_api  # the [dev] extra

    expect, sync_playwright = sync_api.expect, sync_api.sync_playwright

    shot = Path(os.environ.get("FASTCHAT_LITE_SCREENSHOT") or tmp_path / "web_demo.png")
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            # Gradio keeps a connection open, so "networkidle" never comes: wait for elements.
            page.goto(web_url, wait_until="domcontentloaded")
            expect(page.locator("#fcl-status")).to_contain_text("1 model available", timeout=30000)
            page.locator("#fcl-model input").click()
            page.get_by_role("option", name=MODEL_NAME).click()
            expect(page.locator("#fcl-model input")).to_have_value(MODEL_NAME)

            page.get_by_text("Parameters").click()
            page.locator("#fcl-system textarea").fill("You are a helpful assistant.")
            page.locator("#fcl-max-tokens input[type=number]").fill("48")
            page.locator("#fcl-max-tokens input[type=number]").press("Enter")

            page.evaluate(bot_texts_js())
            page.locator("#fcl-input textarea").fill(QUESTION)
            page.locator("#fcl-send").click()
            user = page.locator('#fcl-chatbot [data-testid="user"]')
            expect(user).to_have_count(1, timeout=10000)
            expect(user).to_contain_text(QUESTION)  # the tag is shown as text...
            assert page.locator("#fcl-chatbot img[src=x]").count() == 0  # ...not as an element
            bot = page.locator('#fcl-chatbot [data-testid="bot"]')
            expect(bot).to_have_count(1, timeout=30000)
            # The reply has ended when its text has not changed for 2 s.
            page.wait_for_function(
                "() => window.__seen.length > 0 && Date.now() - window.__changed > 2000",
                timeout=60000,
            )
            seen = page.evaluate("window.__seen")
            final = bot.inner_text()
            assert final.strip(), "the assistant reply is empty"
            assert len(seen) >= 2, f"the reply did not stream (seen {seen!r})"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)

            page.locator("#fcl-clear").click()
            expect(page.locator('#fcl-chatbot [data-testid="user"]')).to_have_count(0)
            expect(bot).to_have_count(0)
            assert dialogs == [], f"model or user text ran script: {dialogs}"
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
