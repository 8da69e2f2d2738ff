"""A separate venv with FastChat's ``fschat==0.2.36``, the baseline every benchmark compares to.

It cannot share our environment: its worker needs ``transformers<5``. Facts about installing it
(undeclared deps, LOGDIR) are in ../shared/BASELINES.md. The venv is reused across runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = ROOT / ".bench-venvs" / "fschat"
PACKAGES = [
    "fschat==0.2.36",
    "transformers>=4.57,<5",
    "accelerate",
    "psutil",
    "beautifulsoup4",
    "markdownify",
    "fastapi",
    "uvicorn",
    "shortuuid",
    "httpx",
    "requests",
    "tokenizers",
    "sentencepiece",
    "protobuf",
]


def ensure_fschat_venv(venv: Path = DEFAULT_VENV) -> Path:
    """Create (once) and return the venv's python executable."""
    python = venv / "bin" / "python"
    marker = venv / ".fschat-ready"
    if marker.is_file():
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    print(f"[baseline] installing fschat==0.2.36 into {venv} (about a minute, once)", flush=True)
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *PACKAGES], check=True)
    marker.write_text("ok\n")
    return python


def baseline_env(logdir: Path) -> dict[str, str]:
    """Environment for fastchat processes: LOGDIR set (its modules write logs at import)."""
    logdir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "LOGDIR": str(logdir), "TOKENIZERS_PARALLELISM": "false"}


if __name__ == "__main__":
    print(ensure_fschat_venv())
