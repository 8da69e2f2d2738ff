"""README and docs/ point at things that exist: relative links, images, and the source files and
modules they name (a layout move must not leave a guide describing a file that is gone)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SOURCE_PATH = re.compile(r"`((?:fastchat_lite|data_prep|train|serve|bench|tests)/[\w/]+\.py)`")
MODULE = re.compile(r"`(?:python -m )?((?:fastchat_lite|data_prep|train|serve|bench)(?:\.\w+)+)`")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
FILE_SUFFIXES = {"yaml", "yml", "json", "jsonl", "md", "py", "sh", "txt", "png"}


def _prose(page: Path) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))


def _module_file(parts: list[str]) -> Path | None:
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _names_something(dotted: str) -> bool:
    """The longest module prefix exists and the rest, if any, is a name defined in it."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        source = _module_file(parts[:n])
        if source is not None:
            rest = parts[n:]
            return (
                not rest or re.search(rf"\b{re.escape(rest[0])}\b", source.read_text()) is not None
            )
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_and_images_resolve(page):
    broken = []
    for target in LINK.findall(_prose(page)):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{page.name} links to missing files: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_source_files_and_modules_exist(page):
    text = page.read_text(encoding="utf-8")
    missing = [p for p in SOURCE_PATH.findall(text) if not (REPO / p).is_file()]
    missing += [
        dotted
        for dotted in MODULE.findall(text)
        if dotted.rsplit(".", 1)[-1] not in FILE_SUFFIXES and not _names_something(dotted)
    ]
    assert not missing, f"{page.name} names files or modules that do not exist: {missing}"
