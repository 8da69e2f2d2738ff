"""Separate venvs with FastChat's ``fschat==0.2.36``, the baseline every benchmark compares to.

They cannot share our environment: its worker needs ``transformers<5``. Facts about installing
it (undeclared deps, LOGDIR) are in ../shared/BASELINES.md. Each venv is created once and reused.

FastChat's cleaner (``fastchat.data.clean_sharegpt``) does not declare markdownify; its source
names 0.11.6, the release of its era, and current pip resolves 1.2.x, which renders better but
is slower. The clean benchmark reports both, so there are two venvs differing only in that pin:

- ``.bench-venvs/fschat``: markdownify 1.2.x (what every other benchmark uses);
- ``.bench-venvs/fschat-md0116``: markdownify 0.11.6.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENVS_DIR = ROOT / ".bench-venvs"
DEFAULT_VENV = VENVS_DIR / "fschat"
MD_CURRENT = "markdownify>=1.2,<1.3"
MD_ERA = "markdownify==0.11.6"
# name -> (venv, markdownify requirement); "md1.2" is the default venv.
VARIANTS: dict[str, tuple[Path, str]] = {
    "md0.11.6": (VENVS_DIR / "fschat-md0116", MD_ERA),
    "md1.2": (DEFAULT_VENV, MD_CURRENT),
}
PACKAGES = [
    "fschat==0.2.36",
    "transformers>=4.57,<5",
    "accelerate",
    "psutil",
    "beautifulsoup4",
    "fastapi",
    "uvicorn",
    "shortuuid",
    "httpx",
    "requests",
    "tokenizers",
    "sentencepiece",
    "protobuf",
    "tqdm",
]


def ensure_fschat_venv(venv: Path = DEFAULT_VENV, markdownify: str = MD_CURRENT) -> Path:
    """Create (once) and return the python of a venv with fschat and ``markdownify``.

    The marker file records the markdownify requirement the venv was made with; a venv made
    before the pin (marker ``ok``) or with another one gets only markdownify reinstalled.
    """
    python = venv / "bin" / "python"
    marker = venv / ".fschat-ready"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if marker.is_file():
        if marker.read_text().strip() != markdownify:
            print(f"[baseline] {venv.name}: installing {markdownify}", flush=True)
            subprocess.run([*pip, markdownify], check=True)
            marker.write_text(markdownify + "\n")
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(
        f"[baseline] installing fschat==0.2.36 + {markdownify} into {venv} (about a minute, once)",
        flush=True,
    )
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *PACKAGES, markdownify], check=True)
    marker.write_text(markdownify + "\n")
    return python


def ensure_fschat_venvs() -> dict[str, Path]:
    """Both FastChat venvs (see :data:`VARIANTS`), created once: name -> python executable."""
    return {name: ensure_fschat_venv(venv, md) for name, (venv, md) in VARIANTS.items()}


def package_version(python: Path, package: str) -> str:
    """The version of ``package`` installed for ``python`` (another venv's interpreter)."""
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return subprocess.run(
        [str(python), "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


SERVE_EXTRAS = ["uvloop", "httptools"]  # what uvicorn[standard] adds: its fastest loop and parser


def ensure_serve_extras(python: Path) -> None:
    """Install uvloop and httptools into a FastChat venv (once): its servers call
    ``uvicorn.run`` with the default ``auto`` loop and parser, which use them when importable,
    so the serving benchmark compares against FastChat on the same event loop as ours."""
    missing = [
        name
        for name in SERVE_EXTRAS
        if subprocess.run([str(python), "-c", f"import {name}"], capture_output=True).returncode
    ]
    if missing:
        print(f"[baseline] installing {' '.join(missing)} into {python.parent.parent}", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *missing], check=True)


def baseline_env(logdir: Path) -> dict[str, str]:
    """Environment for fastchat processes: LOGDIR set (its modules write logs at import)."""
    logdir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "LOGDIR": str(logdir), "TOKENIZERS_PARALLELISM": "false"}


if __name__ == "__main__":
    for name, python in ensure_fschat_venvs().items():
        print(name, python, "markdownify", package_version(python, "markdownify"))
