"""Export trained Llama-family models to GGUF for llama.cpp (see :mod:`.export`).

Names are imported on first use, so the CLI can read the choices without numpy or gguf."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DTYPES": "fastchat_lite.gguf.quantize",
    "QUANT_TYPES": "fastchat_lite.gguf.quantize",
    "quantizer_available": "fastchat_lite.gguf.quantize",
    "ExportReport": "fastchat_lite.gguf.export",
    "export_gguf": "fastchat_lite.gguf.export",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(name)
    return getattr(importlib.import_module(_EXPORTS[name]), name)
