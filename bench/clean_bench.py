"""Benchmark: ``fastchat-lite data clean`` vs FastChat's ``fastchat.data.clean_sharegpt``.

Generates a deterministic ChatGPT-UI HTML dump (20K conversations, ~190 MB by default), runs
both cleaners on the same file with the same number of worker processes, and prints
conversations/s and peak RSS for each and the ratios.

Peak RSS is the highest *sum* of RSS over the cleaner's process and all its descendants,
sampled every 50 ms with psutil (pages shared after fork are counted once per process, as
`ps` would). FastChat gets only structurally valid records (its cleaner dies with a KeyError
on the first malformed one); every generated record is valid, so both see the same input.

    python -m bench.clean_bench                # 20K conversations, 2 workers, 3 rounds
    python -m bench.clean_bench --n 2000 --rounds 1   # a quick run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.baseline_env import baseline_env, ensure_fschat_venv  # noqa: E402
from fastchat_lite.processes import cli_argv, spawn  # noqa: E402
from fastchat_lite.quickstart.sample_html import code_block_html, wrap_reply  # noqa: E402

_VOCABULARY = (
    "the a model data function value list return error user server request file memory "
    "python training token output input loop class method string number result example "
    "performance cache query index table network thread process update config system 我们 "
    "数据 模型 训练 🎉 résumé naïve"
)
WORDS = _VOCABULARY.split()
LANGS = ["python", "javascript", "bash", "sql", "java", "cpp", "go", "rust", "json", ""]


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    if rng.random() < 0.3:
        words[rng.randrange(n)] = f"<code>{rng.choice(['my_var', 'x * y', '__init__'])}</code>"
    if rng.random() < 0.3:
        words[rng.randrange(n)] = f"<strong>{rng.choice(WORDS)}</strong>"
    return " ".join(words).capitalize() + "."


def _code_block(rng: random.Random) -> str:
    lang = rng.choice(LANGS)
    lines = []
    for _ in range(rng.randint(3, 14)):
        indent = "    " * rng.randint(0, 2)
        lines.append(
            f'{indent}<span class="hljs-keyword">def</span> <span class="hljs-title function_">'
            f'{rng.choice(WORDS)}_{rng.randint(0, 99)}</span>(<span class="hljs-params">a, b'
            f'</span>): <span class="hljs-keyword">return</span> a &lt; b &amp;&amp; '
            f'<span class="hljs-string">"x_y"</span>'
        )
    return code_block_html("\n".join(lines), lang or None, header=lang or "code")


def _reply(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(2, 6)):
        kind = rng.random()
        if kind < 0.45:
            parts.append(f"<p>{' '.join(_sentence(rng, rng.randint(8, 25)) for _ in range(3))}</p>")
        elif kind < 0.7:
            tag = rng.choice(["ol", "ul"])
            items = "".join(
                f"<li><p>{_sentence(rng, rng.randint(5, 15))}</p></li>"
                for _ in range(rng.randint(2, 6))
            )
            parts.append(f"<{tag}>{items}</{tag}>")
        elif kind < 0.92:
            parts.append(_code_block(rng))
        else:
            head = "".join(f"<th>{rng.choice(WORDS)}</th>" for _ in range(3))
            rows = "".join(
                "<tr>" + "".join(f"<td>{rng.choice(WORDS)}</td>" for _ in range(3)) + "</tr>"
                for _ in range(rng.randint(2, 6))
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return wrap_reply("".join(parts))


def generate_dump(path: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` ChatGPT-UI HTML conversations as one JSON list; returns the file size."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write("[\n")
        for i in range(n):
            turns = []
            for _ in range(rng.randint(1, 4)):
                human = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
                turns.append({"from": "human", "value": human + " <div> my_var?"})
                turns.append({"from": "gpt", "value": _reply(rng)})
            record = {"id": f"bench_{i}", "conversations": turns}
            out.write(("," if i else "") + json.dumps(record, ensure_ascii=False) + "\n")
        out.write("]\n")
    return path.stat().st_size


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """(wall seconds, peak summed RSS in bytes over the process tree) of one command."""
    # Output goes to a file, not a pipe: a full pipe buffer would block the cleaner's tqdm.
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = spawn(cmd, env=env, log=log)
        peak = _poll_peak_rss(proc)
        elapsed = time.perf_counter() - start
        log.seek(0)
        err = log.read().decode(errors="replace")[-2000:]
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}):\n{err}")
    return elapsed, peak


def _poll_peak_rss(proc: subprocess.Popen) -> int:
    """Highest RSS summed over ``proc`` and its descendants, sampled every 50 ms until exit."""
    import psutil

    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        with contextlib.suppress(psutil.Error):
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
        peak = max(peak, total)
        time.sleep(0.05)
    return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="conversations to generate")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for both")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--keep", metavar="DIR", help="keep the dump and outputs here")
    args = parser.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="clean-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    dump = work / "sharegpt_html.json"
    size = generate_dump(dump, args.n)
    print(f"dump: {args.n} conversations, {size / 2**20:.0f} MiB at {dump}")
    print("FastChat gets only structurally valid records (all generated records are valid).")

    fschat_python = ensure_fschat_venv()
    cores = ",".join(str(c) for c in range(args.workers))
    ours = cli_argv(
        ["data", "clean", dump, "-o", work / "ours.jsonl", "--workers", args.workers, "--quiet"]
    )
    theirs = [
        str(fschat_python),
        "-m",
        "fastchat.data.clean_sharegpt",
        "--in-file",
        str(dump),
        "--out-file",
        str(work / "theirs.json"),
    ]
    # FastChat uses ProcessPoolExecutor() = one worker per visible core: pin it to N cores.
    theirs = ["taskset", "-c", cores, *theirs]
    ours = ["taskset", "-c", cores, *ours]
    env = baseline_env(work / "logs")
    results: dict[str, list[tuple[float, int]]] = {"ours": [], "fastchat": []}
    for r in range(args.rounds):
        for name, cmd in (("ours", ours), ("fastchat", theirs)):
            seconds, peak = run_measured(cmd, env=env)
            results[name].append((seconds, peak))
            print(
                f"round {r + 1} {name:9s} {args.n / seconds:8.1f} conv/s  "
                f"{seconds:6.1f} s  peak RSS {peak / 2**20:6.0f} MiB",
                flush=True,
            )
    return _print_summary(results, args.n, args.workers)


def _print_summary(results: dict[str, list[tuple[float, int]]], n: int, workers: int) -> int:
    med = {
        name: (statistics.median(n / s for s, _ in runs), statistics.median(p for _, p in runs))
        for name, runs in results.items()
    }
    (ours_rate, ours_rss), (their_rate, their_rss) = med["ours"], med["fastchat"]
    print(f"\nmedians over {len(results['ours'])} rounds, {workers} workers each:")
    print(f"  ours     {ours_rate:8.1f} conv/s  peak RSS {ours_rss / 2**20:6.0f} MiB")
    print(f"  fastchat {their_rate:8.1f} conv/s  peak RSS {their_rss / 2**20:6.0f} MiB")
    print(f"  throughput ratio ours/fastchat: {ours_rate / their_rate:.2f}x (target >= 2x)")
    print(f"  peak memory ratio ours/fastchat: {ours_rss / their_rss:.2f}x (target <= 0.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
