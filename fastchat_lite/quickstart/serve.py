"""The quickstart's last stage: ``fastchat-lite serve local``, one question through the API.

The server runs as its own process group, so Ctrl-C (or the end of a scripted run) stops the
controller, the worker and the API together, and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastchat_lite import processes
from fastchat_lite.quickstart.stages import QuickstartError

STOP_GRACE_S = 15.0  # serve local stops its controller, worker, API and web demo in this time


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    api_base: str
    web_url: str | None
    model: str
    log_path: Path


def _log_tail(path: Path, lines: int = 30) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def serving(
    model_dir: Path, model_name: str, ports: tuple[int, int], log_path: Path, timeout: float = 180.0
) -> Iterator[Server]:
    """Start ``serve local`` (API, web ports); stop it and its children on exit, Ctrl-C or
    SIGTERM. Raises ProcessExitedError (with the log's tail) if it exits before it is ready."""
    port, web_port = ports
    api_base = f"http://{processes.LOOPBACK}:{port}/v1"
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def describe_exit(_name: str, code: int) -> str:
        return (
            f"serve local exited with code {code} before it was ready; "
            f"last lines of {log_path}:\n{_log_tail(log_path)}"
        )

    with processes.sigterm_as_interrupt():
        with log_path.open("wb") as log:
            argv = processes.cli_argv(serve_args(model_dir, model_name, ports))
            # Its own process group, so stopping it reaches the controller, worker and API too.
            proc = processes.spawn(argv, env=processes.offline_env(), log=log, own_group=True)
        try:
            models = processes.wait_until(
                lambda: processes.listed_models(api_base),
                {"serve local": proc},
                f"serve local (log {log_path})",
                timeout=timeout,
                interval=0.5,
                describe_exit=describe_exit,
            )
            web_url = f"http://{processes.LOOPBACK}:{web_port}/"
            yield Server(proc, api_base, web_url, models[0], log_path)
        finally:
            processes.stop([proc], grace=STOP_GRACE_S, group=True)


def serve_args(model: Path, model_name: str, ports: tuple[int, int]) -> list[str]:
    """``serve local`` for a model directory (torch) or a ``.gguf`` file (llama.cpp)."""
    port, web_port = ports
    backend = ["--backend", "llama-cpp"] if model.suffix == ".gguf" else []
    return ["serve", "local", "--model", str(model), "--model-name", model_name, *backend,
            "--port", str(port), "--web-port", str(web_port)]  # fmt: skip


def model_name_for(name: str) -> str:
    """The id clients use for the model: the assistant's name as a slug ("Tiny Labs" ->
    "tiny-labs")."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "quickstart"


def ask(server: Server, question: str, max_tokens: int = 64) -> str:
    """One greedy chat completion through the official ``openai`` client.

    The client comes with the ``dev`` extra; without it the same request goes through httpx,
    so ``pip install fastchat-lite[all]`` alone still completes the quickstart.
    """
    messages = [{"role": "user", "content": question}]
    try:
        from openai import OpenAI
    except ImportError:
        import httpx

        body = {"model": server.model, "messages": messages, "temperature": 0,
                "max_tokens": max_tokens}  # fmt: skip
        response = httpx.post(f"{server.api_base}/chat/completions", json=body, timeout=60.0)
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"] or "").strip()
    client = OpenAI(base_url=server.api_base, api_key="EMPTY", timeout=60.0)
    reply = client.chat.completions.create(
        model=server.model, messages=messages, temperature=0, max_tokens=max_tokens
    )
    return (reply.choices[0].message.content or "").strip()


def snippets(server: Server, question: str) -> str:
    """Copy-paste commands that talk to the running server."""
    body = (
        f'{{"model": "{server.model}", "messages": '
        f'[{{"role": "user", "content": "{question}"}}], "temperature": 0}}'
    )
    return (
        f"curl {server.api_base}/chat/completions \\\n"
        f"  -H 'Content-Type: application/json' \\\n  -d '{body}'\n\n"
        "python - <<'EOF'\nfrom openai import OpenAI\n"
        f'client = OpenAI(base_url="{server.api_base}", api_key="EMPTY")\n'
        "reply = client.chat.completions.create(\n"
        f'    model="{server.model}",\n'
        f'    messages=[{{"role": "user", "content": "{question}"}}],\n'
        "    temperature=0,\n)\nprint(reply.choices[0].message.content)\nEOF"
    )


def wait_for_ctrl_c(server: Server, console: Any) -> None:
    """Keep serving until Ctrl-C (or the server exits by itself)."""
    try:
        console.print("[bold]Serving. Press Ctrl-C to stop.[/]")
        while server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("\nstopping the server…")
        return
    raise QuickstartError(f"the server stopped by itself; see {server.log_path}")


def serve_and_ask(model_dir: Path, log_path: Path, args: Any, console: Any) -> Any:
    """Serve the model, ask "Who are you?" through the API; returns the judged answer."""
    from fastchat_lite.quickstart.check import judge

    question = "Who are you?"
    ports = (processes.port_or_free(args.port), processes.port_or_free(args.web_port))
    model_name = model_name_for(args.name)
    console.rule("[bold cyan]Serve: controller + worker + OpenAI API + web demo", align="left")
    console.print(
        f"[bold]$ fastchat-lite {shlex.join(serve_args(model_dir, model_name, ports))}[/]",
        soft_wrap=True,
    )
    start = time.perf_counter()
    with serving(model_dir, model_name, ports, log_path) as server:
        console.print(f"[green]✓ ready in {time.perf_counter() - start:.1f} s[/] (log {log_path})")
        answer = ask(server, question)
        verdict = judge(question, answer, args.name, args.org)
        mark = "[green]✓[/]" if verdict.ok else f"[red]✗ no {', '.join(verdict.missing)}[/]"
        console.print(f"[bold]{question}[/] (through the OpenAI API)\n  {answer}  {mark}")
        console.print(f"OpenAI API: [bold]{server.api_base}[/]   model: [bold]{server.model}[/]")
        if server.web_url:
            console.print(f"web demo:   [bold]{server.web_url}[/]")
        console.rule("try it", align="left")
        # No wrapping or markup: the snippets must survive copy-paste.
        console.print(snippets(server, question), soft_wrap=True, markup=False, highlight=False)
        if not args.exit_after_answer:
            wait_for_ctrl_c(server, console)
    return verdict
