"""Run the quickstart's stages as the real ``fastchat-lite`` commands, each at most once.

A stage is a command plus the files it makes. When it finishes, a marker
``<workdir>/.stages/<name>.json`` records a fingerprint of everything that decides its output
(its arguments and the fingerprints of the stages before it). On a re-run a stage whose marker
matches and whose outputs exist is skipped, so changing ``--name`` redoes the identity data and
everything downstream, while an unchanged run finishes in seconds. ``--force`` redoes all.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.io import atomic_write, write_json
from fastchat_lite.processes import cli_argv, offline_env, spawn, stop


class QuickstartError(FastChatLiteError):
    """A quickstart stage failed; the message names the stage and the command to re-run."""


@dataclass
class Stage:
    """One step: a Python ``action`` (run first) and/or ``commands`` (fastchat-lite argv lists)."""

    name: str
    title: str
    outputs: list[Path]
    settings: dict[str, Any]
    commands: list[list[str]] = field(default_factory=list)
    action: Callable[[], None] | None = None


@dataclass
class StageResult:
    name: str
    title: str
    seconds: float
    skipped: bool


class StageRunner:
    """Runs stages in order, printing headers and timings, skipping finished ones."""

    def __init__(self, workdir: Path, console: Any, force: bool = False) -> None:
        self.workdir = workdir
        self.console = console
        self.force = force
        self.results: list[StageResult] = []
        self._chain = ""  # fingerprint of everything upstream
        self._total = 0

    def _marker(self, stage: Stage) -> Path:
        return self.workdir / ".stages" / f"{stage.name}.json"

    def _fingerprint(self, stage: Stage) -> str:
        payload = json.dumps(
            {"up": self._chain, "settings": stage.settings, "commands": stage.commands},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def is_done(self, stage: Stage, fingerprint: str) -> bool:
        marker = self._marker(stage)
        if self.force or not marker.is_file():
            return False
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, json.JSONDecodeError):
            return False
        return recorded == fingerprint and all(p.exists() for p in stage.outputs)

    def run_all(self, stages: list[Stage]) -> list[StageResult]:
        self._total = len(stages)
        for index, stage in enumerate(stages, start=1):
            self.run(stage, index)
        return self.results

    def run(self, stage: Stage, index: int) -> StageResult:
        fingerprint = self._fingerprint(stage)
        self.console.rule(f"[bold cyan]{index}/{self._total}  {stage.title}", align="left")
        if self.is_done(stage, fingerprint):
            self._chain = fingerprint
            self.console.print("[dim]↷ already done, skipped (use --force to redo)[/]")
            result = StageResult(stage.name, stage.title, 0.0, skipped=True)
            self.results.append(result)
            return result
        self._marker(stage).unlink(missing_ok=True)
        start = time.perf_counter()
        if stage.action is not None:
            stage.action()
        for argv in stage.commands:
            self._run_command(stage, argv)
        seconds = time.perf_counter() - start
        self._chain = fingerprint
        write_json(self._marker(stage), {"fingerprint": fingerprint, "seconds": round(seconds, 1)})
        self.console.print(f"[green]✓ {stage.title} in {seconds:.1f} s[/]")
        result = StageResult(stage.name, stage.title, seconds, skipped=False)
        self.results.append(result)
        return result

    def _run_command(self, stage: Stage, argv: list[Any]) -> None:
        args = [str(a) for a in argv]
        shown = "fastchat-lite " + shlex.join(args)
        self.console.print(f"[bold]$ {shown}[/]", soft_wrap=True)
        self._record_command(shown)
        # Output goes straight to the terminal so the command's own progress bars show.
        proc = spawn(cli_argv(args), env=offline_env())
        try:
            code = proc.wait()
        finally:
            stop([proc])  # only does something when Ctrl-C / SIGTERM interrupted the wait
        if code != 0:
            raise QuickstartError(
                f"stage '{stage.name}' failed (exit {code}) running: {shown}\n"
                "See its output above; fix the cause and re-run quickstart "
                "(finished stages are reused)."
            )

    def _record_command(self, shown: str) -> None:
        """Keep ``commands.sh`` in the workdir: the whole pipeline, to copy and adapt."""
        path = self.workdir / "commands.sh"
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        if not lines:
            lines = [
                "#!/bin/sh",
                "# The commands fastchat-lite quickstart ran, in order.",
                "set -e",
            ]
        if shown not in lines:
            lines.append(shown)
        with atomic_write(path) as handle:
            handle.write("\n".join(lines) + "\n")


def timings_table(results: list[StageResult]) -> Any:
    """A rich table of stage timings for the final summary."""
    from rich.table import Table

    table = Table(title="Stages", show_edge=False)
    table.add_column("stage")
    table.add_column("time", justify="right")
    for result in results:
        table.add_row(result.title, "skipped" if result.skipped else f"{result.seconds:.1f} s")
    total = sum(r.seconds for r in results)
    table.add_row("[bold]total", f"[bold]{total:.1f} s")
    return table
