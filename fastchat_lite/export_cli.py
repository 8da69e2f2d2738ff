"""``fastchat-lite export gguf``: a trained model directory as a GGUF file for llama.cpp."""

from __future__ import annotations

import argparse
from pathlib import Path

from fastchat_lite.gguf.quantize import DTYPES, QUANT_TYPES


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="convert a trained model for other runtimes (GGUF for llama.cpp)",
        description="Example: fastchat-lite export gguf runs/tiny/final -o tiny-q4.gguf "
        "--quantize q4_K_M",
    )
    parser.add_argument("format", choices=("gguf",))
    parser.add_argument("model", help="Hugging Face model directory (a Llama-family model)")
    parser.add_argument(
        "-o", "--output", help="GGUF file to write (default: ./<model name>-<type>.gguf)"
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="f16",
        help="tensor type written (the base for --quantize; default f16)",
    )
    parser.add_argument(
        "--quantize",
        choices=tuple(QUANT_TYPES),
        help="quantize with llama.cpp's quantizer (needs the [llamacpp] extra or llama-quantize)",
    )
    parser.add_argument(
        "--template", help="chat template to embed (default: the one the model was trained with)"
    )
    parser.add_argument("--threads", type=int, help="quantizer threads (default: all cores)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fastchat_lite.gguf import export_gguf

    kind = args.quantize or args.dtype
    output = Path(args.output or f"{Path(args.model).resolve().name}-{kind}.gguf")
    report = export_gguf(
        args.model,
        output,
        dtype=args.dtype,
        quantize=args.quantize,
        template=args.template,
        threads=args.threads,
    )
    print(report.summary())
    return 0
