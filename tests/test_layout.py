"""The floor plan holds: stages import only the core, nothing imports in a circle, the core holds
no stage logic, and the quickstart is reached only through the CLI table.

Imports are read with ``ast`` (every import, including the lazy ones inside functions, since a
lazy import is how a cycle hides), so this runs in a second without importing torch or gradio.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fastchat_lite", "data_prep", "train", "serve", "llm_judge")
STAGES = ("data_prep", "train", "serve", "llm_judge")
# The CLI table names stage modules as strings; no other core module may reach a stage.
CORE_ROOMS = {"fastchat_lite.quickstart"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """Project modules ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]  # fmt: skip
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


GRAPH = {name: set(_imports(name, path)) for name, path in MODULES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_walk_sees_every_package_and_real_edges():
    assert {_top(m) for m in MODULES} == set(PACKAGES)
    assert "fastchat_lite.templates" in GRAPH["fastchat_lite.masking"]  # the walker works


def test_no_module_imports_itself_through_a_cycle():
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_only_itself_and_the_core(stage):
    wrong = {
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if _top(m) == stage
        for t in targets
        if _top(t) not in (stage, "fastchat_lite")
    }
    assert not wrong, f"{stage} must import only fastchat_lite: {sorted(wrong)}"


def test_the_core_imports_no_stage_and_not_the_quickstart():
    wrong = {
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if _top(m) == "fastchat_lite" and not any(m.startswith(r) for r in CORE_ROOMS)
        for t in targets
        if _top(t) != "fastchat_lite" or any(t.startswith(r) for r in CORE_ROOMS)
    }
    assert not wrong, f"the core must not reach stages or the quickstart: {sorted(wrong)}"


def test_the_core_holds_no_quickstart_files():
    stray = sorted(p.name for p in (REPO / "fastchat_lite").glob("quickstart*.py"))
    assert not stray, f"quickstart modules belong in fastchat_lite/quickstart/: {stray}"


def test_serve_layers_point_one_way():
    """engine knows nothing of cluster/openai/web; cluster knows nothing of openai/web."""
    above = {
        "serve.engine": ("serve.cluster", "serve.openai", "serve.web"),
        "serve.cluster": ("serve.openai", "serve.web"),
    }
    wrong = {
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        for room, forbidden in above.items()
        if m == room or m.startswith(room + ".")
        for t in targets
        if any(t == f or t.startswith(f + ".") for f in forbidden)
    }
    assert not wrong, f"serve layers import upward: {sorted(wrong)}"


def test_every_package_says_what_it_holds():
    undocumented = [
        name
        for name, path in MODULES.items()
        if path.name == "__init__.py" and not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert not undocumented, f"packages without a one-line docstring: {undocumented}"
