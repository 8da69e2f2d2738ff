"""k-quants (and the other llama.cpp-only types) through llama.cpp's own quantizer.

The PyPI ``gguf`` package writes f32/f16/q8_0 but its k-quant code is reference-only and far
slower, and llama.cpp's quantizer also picks the per-tensor mix (q4_K_M keeps some tensors at
q6_K). Either the ``llama_cpp`` Python package or a ``llama-quantize`` binary on PATH does it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from fastchat_lite.errors import FastChatLiteError, MissingExtraError

DTYPES = ("f32", "f16", "q8_0")  # written from Python, with the gguf package

# --quantize choice -> (gguf.LlamaFileType member, block size of its main type)
QUANT_TYPES: dict[str, tuple[str, int]] = {
    "q4_0": ("MOSTLY_Q4_0", 32),
    "q4_1": ("MOSTLY_Q4_1", 32),
    "q5_0": ("MOSTLY_Q5_0", 32),
    "q5_1": ("MOSTLY_Q5_1", 32),
    "q2_K": ("MOSTLY_Q2_K", 256),
    "q3_K_M": ("MOSTLY_Q3_K_M", 256),
    "q4_K_S": ("MOSTLY_Q4_K_S", 256),
    "q4_K_M": ("MOSTLY_Q4_K_M", 256),
    "q5_K_M": ("MOSTLY_Q5_K_M", 256),
    "q6_K": ("MOSTLY_Q6_K", 256),
}


def quantizer_available() -> str | None:
    """Which quantizer would run: "llama_cpp", "llama-quantize", or None."""
    if importlib.util.find_spec("llama_cpp") is not None:
        return "llama_cpp"
    if shutil.which("llama-quantize"):
        return "llama-quantize"
    return None


def quantize_gguf(source: Path, target: Path, kind: str, threads: int | None = None) -> None:
    """Write ``target`` as ``source`` (an f16/f32 GGUF) quantized to ``kind``."""
    import gguf

    member, _block = QUANT_TYPES[kind]
    ftype = int(gguf.LlamaFileType[member])
    threads = threads or max(1, os.cpu_count() or 1)
    tool = quantizer_available()
    if tool == "llama_cpp":
        import llama_cpp
        from llama_cpp._utils import suppress_stdout_stderr

        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.nthread = threads
        with suppress_stdout_stderr(disable=False):  # llama.cpp logs every tensor to stderr
            rc = llama_cpp.llama_model_quantize(
                str(source).encode(), str(target).encode(), ctypes.byref(params)
            )
        if rc != 0:
            raise FastChatLiteError(f"llama.cpp failed to quantize {source} to {kind} (rc={rc})")
    elif tool == "llama-quantize":
        done = subprocess.run(
            ["llama-quantize", str(source), str(target), kind.upper(), str(threads)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise FastChatLiteError(f"llama-quantize failed:\n{done.stderr[-2000:]}")
    else:
        raise MissingExtraError(
            f"--quantize {kind} needs llama.cpp's quantizer: pip install 'fastchat-lite[llamacpp]' "
            "(builds llama-cpp-python from source, ~17 min, needs cmake and a C++ compiler) or put "
            "llama.cpp's llama-quantize on PATH; --dtype f32, f16 and q8_0 need neither"
        )
