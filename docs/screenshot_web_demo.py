"""Refresh docs/img/web_demo.png: the web demo chatting with the quickstart-trained model.

    fastchat-lite quickstart --no-serve
    python docs/screenshot_web_demo.py fastchat-lite-quickstart/models/trained docs/img/web_demo.png

Starts ``serve local`` (controller + worker + API + web demo) on free ports, asks two identity
questions at temperature 0 in headless Debian chromium, and saves a full-page screenshot.
"""

from __future__ import annotations

import os
import sys
import time

import httpx
from playwright.sync_api import expect, sync_playwright

from fastchat_lite.processes import cli_argv, free_port, spawn, stop, wait_until

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
QUESTIONS = ["Who are you?", "Who created you?"]


def _page_up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def screenshot(url: str, out: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url, wait_until="domcontentloaded")  # Gradio never reaches networkidle
        expect(page.locator("#fcl-status")).to_contain_text("1 model available", timeout=30000)
        page.locator("#fcl-model input").click()
        page.get_by_role("option", name="vicuna").click()
        page.get_by_text("Parameters").click()
        temperature = page.locator("#fcl-temperature input[type=number]")
        temperature.fill("0")
        temperature.press("Enter")
        page.get_by_text("Parameters").click()
        for number, question in enumerate(QUESTIONS, start=1):
            page.locator("#fcl-input textarea").fill(question)
            page.locator("#fcl-send").click()
            bots = page.locator('#fcl-chatbot [data-testid="bot"]')
            expect(bots).to_have_count(number, timeout=30000)
            time.sleep(3)  # let the streamed reply finish
        page.screenshot(path=out, full_page=True)
        browser.close()


def main(model: str, out: str) -> None:
    api_port, web_port = free_port(), free_port()
    args = ["serve", "local", "--model", model, "--model-name", "vicuna",
            "--port", api_port, "--web-port", web_port]  # fmt: skip
    with open(os.devnull, "wb") as devnull:
        stack = spawn(cli_argv(args), log=devnull, own_group=True)
    try:
        url = f"http://127.0.0.1:{web_port}/"
        wait_until(
            lambda: _page_up(url), {"serve local": stack}, f"the web demo at {url}", timeout=150
        )
        screenshot(url, out)
    finally:
        stop([stack], grace=30, group=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
