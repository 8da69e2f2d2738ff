"""``fastchat-lite quickstart``: the whole Vicuna path on a laptop CPU, from bundled data.

raw ChatGPT-UI dump + identity conversations -> ``data clean`` -> ``init-model`` (tokenizer +
small random Llama) -> ``data split`` -> ``train`` (packing, gradient checkpointing) -> ask the
model who it is -> ``serve local`` and ask again through the OpenAI API. Every stage is the
real command (see ``<workdir>/commands.sh``); finished stages are reused on a re-run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.templates import DEFAULT_TEMPLATE

DEFAULT_NAME = "Vicuna"
DEFAULT_ORG = "LMSYS"
TEMPLATE = DEFAULT_TEMPLATE
# How often each dataset is listed in train's data_path (its weight). The identity data is
# listed several times so it dominates; only 72 of its 500 conversations say the *name* (the
# rest say the organisation), so those are also written to their own file and weighted up,
# or "Who are you?" drifts to the more frequent "I'm a language model trained by <org>".
DATASETS = ("sample", "identity", "identity_name")
DATA_REPEATS = {"sample": 1, "identity": 3, "identity_name": 6}
MODEL_SETTINGS: dict[str, Any] = {
    "vocab_size": 2048,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "template": TEMPLATE,
    "seed": 0,
}
TRAIN_CONFIG = "tiny_cpu.yaml"  # in fastchat_lite/configs/: the one source of the training knobs
# What the quickstart changes in TRAIN_CONFIG besides the paths (set per workdir), and why.
TRAIN_OVERRIDES: dict[str, Any] = {
    "template": TEMPLATE,  # the template the split stage measured lengths with, spelled out
    "gradient_checkpointing": True,  # to show it working; a model this small is faster without
    "save_steps": 0,  # a redone stage trains from scratch, so checkpoints would only cost time
}
_PATH_KEYS = ("model_name_or_path", "data_path", "output_dir")
# --gguf: the trained model as a 4-bit GGUF served by llama.cpp (what runs on a laptop).
GGUF_QUANT = "q4_K_M"


def train_settings() -> dict[str, Any]:
    """The shipped ``tiny_cpu.yaml`` without its paths, plus :data:`TRAIN_OVERRIDES`."""
    from importlib import resources

    import yaml

    text = (resources.files("fastchat_lite") / "configs" / TRAIN_CONFIG).read_text("utf-8")
    config = {k: v for k, v in yaml.safe_load(text).items() if k not in _PATH_KEYS}
    return {**config, **TRAIN_OVERRIDES}


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "quickstart",
        help="clean bundled data, train a tiny model on the CPU, serve it, ask who it is",
        description=(
            "The whole path on bundled sample data, CPU only, nothing downloaded: "
            "data clean -> init-model -> data split -> train -> serve local. "
            "Re-running reuses finished stages."
        ),
    )
    parser.add_argument("--workdir", default="fastchat-lite-quickstart", help="where to work")
    parser.add_argument("--name", default=DEFAULT_NAME, help="the assistant's name")
    parser.add_argument("--org", default=DEFAULT_ORG, help="the organisation that made it")
    parser.add_argument("--no-serve", action="store_true", help="stop after training + check")
    parser.add_argument("--force", action="store_true", help="redo every stage")
    parser.add_argument("--port", type=int, default=8000, help="API port (a free one if busy)")
    parser.add_argument("--web-port", type=int, default=7860, help="web demo port (ditto)")
    parser.add_argument(
        "--gguf",
        action="store_true",
        help=f"also export the trained model to a {GGUF_QUANT} GGUF and serve that with "
        "llama.cpp (needs the [llamacpp] extra)",
    )
    parser.add_argument(
        "--exit-after-answer",
        action="store_true",
        help="stop the server after its first answer instead of waiting for Ctrl-C (scripts, CI)",
    )
    parser.set_defaults(run=run)


class Paths:
    """Where each stage reads and writes inside the workdir."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.base_model = workdir / "models" / "base"
        self.train_config = workdir / "train.yaml"
        self.trained_model = workdir / "models" / "trained"
        self.gguf = workdir / "models" / f"trained-{GGUF_QUANT}.gguf"
        self.serve_log = workdir / "logs" / "serve.log"
        self.answers = workdir / "identity_answers.json"

    def raw(self, dataset: str) -> Path:
        return self.workdir / "raw" / f"{dataset}.json"

    def clean(self, dataset: str) -> Path:
        return self.workdir / "clean" / f"{dataset}.jsonl"

    def split(self, dataset: str) -> Path:
        return self.workdir / "split" / f"{dataset}.jsonl"


def _write_raw_data(paths: Paths, name: str, org: str) -> None:
    from fastchat_lite.io import write_json
    from fastchat_lite.quickstart.data import identity_records, load_sample_dump

    write_json(paths.raw("sample"), load_sample_dump())
    write_json(paths.raw("identity"), identity_records(name, org))
    write_json(paths.raw("identity_name"), identity_records(name, org, only_naming=True))


def _prepare_training(paths: Paths, settings: dict[str, Any]) -> None:
    """Write ``train.yaml`` and clear an older output, so a redo never resumes stale weights."""
    import shutil

    import yaml

    from fastchat_lite.io import atomic_write

    data_path = [str(paths.split(d)) for d in DATASETS for _ in range(DATA_REPEATS[d])]
    config = {
        "model_name_or_path": str(paths.base_model),
        "data_path": data_path,
        "output_dir": str(paths.trained_model),
        **settings,
    }
    shutil.rmtree(paths.trained_model, ignore_errors=True)
    with atomic_write(paths.train_config) as handle:
        handle.write(f"# fastchat-lite quickstart wrote this from {TRAIN_CONFIG}.\n")
        handle.write("# Edit it and re-run train with it.\n")
        yaml.safe_dump(config, handle, sort_keys=False)


def build_stages(paths: Paths, name: str, org: str, gguf: bool = False) -> list[Any]:
    from fastchat_lite.quickstart.stages import Stage

    model_flags = [f"--{k.replace('_', '-')}={v}" for k, v in MODEL_SETTINGS.items()]
    train = train_settings()
    max_length = str(train["max_length"])
    clean = [
        ["data", "clean", paths.raw(d), "-o", paths.clean(d),
         "--report", paths.clean(d).with_suffix(".report.json")]
        for d in DATASETS
    ]  # fmt: skip
    split = [
        ["data", "split", paths.clean(d), "-o", paths.split(d), "--tokenizer", paths.base_model,
         "--max-length", max_length, "--template", TEMPLATE]
        for d in DATASETS
    ]  # fmt: skip
    stages = [
        Stage(
            "raw", "Write the bundled raw data", [paths.raw(d) for d in DATASETS],
            {"name": name, "org": org}, action=lambda: _write_raw_data(paths, name, org),
        ),
        Stage("clean", "Clean: ChatGPT HTML -> Markdown, drop bad records",
              [paths.clean(d) for d in DATASETS], {}, commands=clean),
        Stage(
            "init", "Train a tokenizer, init a small Llama from scratch",
            [paths.base_model / "config.json"], MODEL_SETTINGS,
            commands=[["init-model", paths.clean("sample"), paths.clean("identity"),
                       "-o", paths.base_model, *model_flags]],
        ),
        Stage("split", "Split long conversations to the training length",
              [paths.split(d) for d in DATASETS], {}, commands=split),
        Stage(
            "train", "Train on the CPU (packing + gradient checkpointing)",
            [paths.trained_model / "config.json"],
            {"train": train, "repeats": DATA_REPEATS},
            commands=[["train", "--config", paths.train_config]],
            action=lambda: _prepare_training(paths, train),
        ),
    ]  # fmt: skip
    if gguf:
        stages.append(
            Stage(
                "gguf", f"Export to GGUF and quantize to {GGUF_QUANT} for llama.cpp",
                [paths.gguf], {"quantize": GGUF_QUANT},
                commands=[["export", "gguf", paths.trained_model, "-o", paths.gguf,
                           "--quantize", GGUF_QUANT]],
            )
        )  # fmt: skip
    return stages


def _train_summary(paths: Paths, console: Any) -> None:
    """Final loss, trained-token fraction and the loss curve, from train's own outputs."""
    log = paths.trained_model / "train_log.jsonl"
    if log.is_file():
        rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
        if rows:
            console.print(
                f"loss {rows[0]['loss']:.2f} at step {rows[0]['step']} -> "
                f"[bold]{rows[-1]['loss']:.2f}[/] at step {rows[-1]['step']}"
            )
    summary = paths.trained_model / "train_summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text(encoding="utf-8")).get("data", {})
        if data.get("tokens"):
            console.print(
                f"trained-token fraction [bold]{data['trained_tokens'] / data['tokens']:.1%}[/]: "
                f"{data['trained_tokens']:,} of {data['tokens']:,} tokens per epoch carry a loss "
                "(the assistant's replies; prompts and the system message do not)"
            )
    curve = paths.trained_model / "loss_curve.png"
    if curve.is_file():
        console.print(f"loss curve: [bold]{curve}[/]", soft_wrap=True)


def _check_llama_cpp() -> None:
    """--gguf needs llama.cpp to quantize and serve: say so before training, not after."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        from fastchat_lite.errors import MissingExtraError

        raise MissingExtraError(
            "--gguf needs llama-cpp-python: pip install 'fastchat-lite[llamacpp]' (builds "
            "llama.cpp from source, ~17 min, needs cmake and a C++ compiler); `make install` "
            "includes it"
        )


def _next_steps(paths: Paths, console: Any) -> None:
    if paths.gguf.is_file():
        laptop = (
            "serve the GGUF         fastchat-lite serve local --backend llama-cpp "
            f"--model {paths.gguf}"
        )
    else:
        laptop = (
            f"run it with llama.cpp   fastchat-lite export gguf {paths.trained_model} "
            f"-o {paths.gguf} --quantize {GGUF_QUANT}"
        )
    console.print(
        "\n[bold]Next:[/]\n"
        f"  chat in the terminal   fastchat-lite chat --model {paths.trained_model}\n"
        f"  serve it again         fastchat-lite serve local --model {paths.trained_model}\n"
        f"  {laptop}\n"
        f"  retrain with changes   edit {paths.train_config}, then "
        f"fastchat-lite train --config {paths.train_config}\n"
        f"  every command it ran   {paths.workdir / 'commands.sh'}",
        soft_wrap=True,
        highlight=False,
    )


def _write_answers(path: Path, results: list[Any]) -> None:
    """What the model said, for scripts and CI to check."""
    from fastchat_lite.io import write_json

    write_json(path, [{"question": r.question, "answer": r.answer, "ok": r.ok} for r in results])


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from fastchat_lite.quickstart.check import answers_table, check_identity
    from fastchat_lite.quickstart.stages import StageRunner, timings_table

    if not args.name.strip() or not args.org.strip():
        raise FastChatLiteError("--name and --org must not be empty: the model learns to say them")
    console = Console()
    started = time.perf_counter()
    paths = Paths(Path(args.workdir))
    paths.workdir.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[bold]fastchat-lite quickstart[/]: teaching a tiny model that it is "
        f"[bold magenta]{args.name}[/], made by [bold magenta]{args.org}[/] "
        f"(workdir {paths.workdir})"
    )
    runner = StageRunner(paths.workdir, console, force=args.force)
    if args.gguf:
        _check_llama_cpp()
    stages = build_stages(paths, args.name, args.org, gguf=args.gguf)
    runner.run_all(stages)
    _train_summary(paths, console)

    console.rule("[bold cyan]Ask the model who it is", align="left")
    results = check_identity(paths.trained_model, args.name, args.org)
    console.print(answers_table(results))
    if not args.no_serve:
        from fastchat_lite.quickstart.serve import serve_and_ask

        served_model = paths.gguf if args.gguf else paths.trained_model
        served = serve_and_ask(served_model, paths.serve_log, args, console)
        served.question += " (through the API)"
        results.append(served)
    _write_answers(paths.answers, results)
    console.print(timings_table(runner.results))
    console.print(f"total wall time {time.perf_counter() - started:.1f} s")
    _next_steps(paths, console)
    if not all(r.ok for r in results):
        console.print(
            "[yellow]The model did not say its name/organisation every time. Train longer: "
            f"fastchat-lite train --config {paths.train_config} --num-train-epochs 4[/]"
        )
        return 1
    return 0
