"""Benchmark: ``fastchat-lite data clean`` vs FastChat's ``fastchat.data.clean_sharegpt``.

Generates a deterministic ChatGPT-UI HTML dump (20K conversations by default) whose text is
mostly ASCII English, like real ShareGPT English (90% of conversations draw only English
words; the rest mix in CJK, accented words and an emoji), and runs four cleaners on it, in
rounds, each round rotating which goes first:

- ours, ``data clean --workers 2``;
- ours with near-duplicate removal, ``--near-dup 0.9``;
- FastChat 0.2.36 with markdownify 0.11.6 (the release its source names; faster);
- FastChat 0.2.36 with markdownify 1.2.x (what pip resolves today; renders better).

All four are pinned with ``taskset`` to the same cores (FastChat's ``ProcessPoolExecutor()``
starts one worker per visible core). Printed per cleaner: conversations/s (median, min-max
over rounds), records kept, and peak memory of its whole process tree three ways:

- summed RSS: pages shared after fork count in every process, as ``ps`` shows them;
- summed PSS: each shared page split between the processes sharing it (what the tree really
  costs the machine);
- summed USS: pages private to each process.

RSS is sampled every 50 ms; PSS and USS (psutil ``memory_full_info()``, one read of
``/proc/PID/smaps_rollup`` per process, ~17 ms for a 1 GiB process) at most every 100 ms:
whenever summed RSS reaches a new high, and otherwise no more often than 10x the time a sample
took (so a plateau costs the sampler under ~10% of a core). CPU seconds are the tree's user +
system time (``RUSAGE_CHILDREN``, the cleaners reap their workers).

Ours and ours+near-dup always run back to back (their order flips every round), so the
near-dup cost is the median of per-round ratios of adjacent runs, in wall and in CPU time.
FastChat gets only structurally valid records (its cleaner dies with a KeyError on the first
malformed one); every generated record is valid, so all see the same input.

    python -m bench.clean_bench                       # 20K conversations, 3 rounds
    python -m bench.clean_bench --n 2000 --rounds 1   # a quick run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.baseline_env import (  # noqa: E402
    VARIANTS,
    baseline_env,
    ensure_fschat_venv,
    package_version,
)
from fastchat_lite.processes import cli_argv, spawn  # noqa: E402
from fastchat_lite.quickstart.sample_html import code_block_html, wrap_reply  # noqa: E402

_ENGLISH = (
    "the a an of to and in is it for on with as that this you can be use model data function "
    "value list return error user server request file memory python training token output "
    "input loop class method string number result example performance cache query index table "
    "network thread process update config system test code type object key name time first "
    "each when which will should how why make run call read write check"
)
_OTHER = "我们 数据 模型 训练 🎉 résumé naïve"
ENGLISH_WORDS = _ENGLISH.split()
OTHER_WORDS = _OTHER.split()
MIXED_WORDS = ENGLISH_WORDS + OTHER_WORDS * 4  # a mixed conversation: ~30% non-English words
MIXED_SHARE = 0.10  # of conversations; the rest use English words only
LANGS = ["python", "javascript", "bash", "sql", "java", "cpp", "go", "rust", "json", ""]
NEAR_DUP = "0.9"
PSS_MIN_INTERVAL = 0.1  # seconds between PSS/USS samples, at least
PSS_MAX_OVERHEAD = 0.10  # of one core, at most, between RSS highs


def _sentence(rng: random.Random, words: list[str], n: int) -> str:
    out = [rng.choice(words) for _ in range(n)]
    if rng.random() < 0.3:
        out[rng.randrange(n)] = f"<code>{rng.choice(['my_var', 'x * y', '__init__'])}</code>"
    if rng.random() < 0.3:
        out[rng.randrange(n)] = f"<strong>{rng.choice(words)}</strong>"
    return " ".join(out).capitalize() + "."


def _code_block(rng: random.Random) -> str:
    lang = rng.choice(LANGS)
    lines = []
    for _ in range(rng.randint(3, 14)):
        indent = "    " * rng.randint(0, 2)
        lines.append(
            f'{indent}<span class="hljs-keyword">def</span> <span class="hljs-title function_">'
            f'{rng.choice(ENGLISH_WORDS)}_{rng.randint(0, 99)}</span>(<span class="hljs-params">'
            f'a, b</span>): <span class="hljs-keyword">return</span> a &lt; b &amp;&amp; '
            f'<span class="hljs-string">"x_y"</span>'
        )
    return code_block_html("\n".join(lines), lang or None, header=lang or "code")


def _reply(rng: random.Random, words: list[str]) -> str:
    parts = []
    for _ in range(rng.randint(2, 6)):
        kind = rng.random()
        if kind < 0.45:
            text = " ".join(_sentence(rng, words, rng.randint(8, 25)) for _ in range(3))
            parts.append(f"<p>{text}</p>")
        elif kind < 0.7:
            tag = rng.choice(["ol", "ul"])
            items = "".join(
                f"<li><p>{_sentence(rng, words, rng.randint(5, 15))}</p></li>"
                for _ in range(rng.randint(2, 6))
            )
            parts.append(f"<{tag}>{items}</{tag}>")
        elif kind < 0.92:
            parts.append(_code_block(rng))
        else:
            head = "".join(f"<th>{rng.choice(words)}</th>" for _ in range(3))
            rows = "".join(
                "<tr>" + "".join(f"<td>{rng.choice(words)}</td>" for _ in range(3)) + "</tr>"
                for _ in range(rng.randint(2, 6))
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return wrap_reply("".join(parts))


@dataclass
class DumpStats:
    size: int  # bytes
    chars: int  # characters in all turn values
    ascii_chars: int
    values: int  # turn values
    ascii_values: int  # turn values with only ASCII characters


def generate_dump(path: Path, n: int, seed: int = 0) -> DumpStats:
    """Write ``n`` ChatGPT-UI HTML conversations as one JSON list; returns what it holds."""
    rng = random.Random(seed)
    chars = ascii_chars = values = ascii_values = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("[\n")
        for i in range(n):
            words = MIXED_WORDS if rng.random() < MIXED_SHARE else ENGLISH_WORDS
            turns = []
            for _ in range(rng.randint(1, 4)):
                human = " ".join(rng.choice(words) for _ in range(rng.randint(5, 60)))
                turns.append({"from": "human", "value": human + " <div> my_var?"})
                turns.append({"from": "gpt", "value": _reply(rng, words)})
            for t in turns:
                value = t["value"]
                non_ascii = len(value.encode("utf-8")) - len(value)  # > 0 iff any non-ASCII
                values += 1
                chars += len(value)
                if non_ascii:
                    ascii_chars += sum(c < "\x80" for c in value)
                else:
                    ascii_chars += len(value)
                    ascii_values += 1
            record = {"id": f"bench_{i}", "conversations": turns}
            out.write(("," if i else "") + json.dumps(record, ensure_ascii=False) + "\n")
        out.write("]\n")
    return DumpStats(path.stat().st_size, chars, ascii_chars, values, ascii_values)


@dataclass
class Run:
    seconds: float
    cpu: float  # user + system seconds of the process tree
    rss: int  # peak summed RSS over the process tree, bytes
    pss: int  # peak summed PSS
    uss: int  # peak summed USS
    kept: int  # records in the output


@dataclass
class Cleaner:
    name: str
    argv: list[str]
    output: Path
    env: dict[str, str] | None = None


def run_measured(cleaner: Cleaner) -> Run:
    """Run one cleaner to the end, sampling its process tree's memory; count what it kept."""
    cleaner.output.unlink(missing_ok=True)
    # Output goes to a file, not a pipe: a full pipe buffer would block the cleaner's tqdm.
    with tempfile.TemporaryFile() as log:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = spawn(cleaner.argv, env=cleaner.env, log=log)
        rss, pss, uss = _poll_peaks(proc)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        log.seek(0)
        text = log.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cleaner.name} failed ({proc.returncode}):\n{text[-2000:]}")
    kept = count_records(cleaner.output)
    # FastChat prints "total: N, skip: S, new: K": check our count against its own.
    said = re.search(r"total: \d+, skip: \d+, new: (\d+)", text)
    if said and int(said.group(1)) != kept:
        raise RuntimeError(f"{cleaner.name}: says it kept {said.group(1)}, output has {kept}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Run(elapsed, cpu, rss, pss, uss, kept)


def count_records(path: Path) -> int:
    """Records in our JSONL (one a line) or in FastChat's ``json.dump(..., indent=2)`` list,
    where each record opens with a line holding only ``  {`` (JSON strings hold no newline)."""
    with path.open("rb") as f:
        if path.suffix == ".jsonl":
            return sum(1 for line in f if line.strip())
        return sum(1 for line in f if line == b"  {\n")


def _poll_peaks(proc: subprocess.Popen) -> tuple[int, int, int]:
    """Peak summed RSS, PSS and USS over ``proc`` and its descendants, until it exits."""
    import psutil

    root = psutil.Process(proc.pid)
    peak_rss = peak_pss = peak_uss = 0
    next_full = last_full = 0.0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            tree = [root, *root.children(recursive=True)]
            rss = 0
            for p in tree:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            new_high = rss > peak_rss
            peak_rss = max(peak_rss, rss)
            now = time.perf_counter()
            if now >= next_full or (new_high and now >= last_full + PSS_MIN_INTERVAL):
                pss = uss = 0
                for p in tree:
                    with contextlib.suppress(psutil.Error):
                        full = p.memory_full_info()
                        pss += full.pss
                        uss += full.uss
                peak_pss, peak_uss = max(peak_pss, pss), max(peak_uss, uss)
                cost = time.perf_counter() - now
                last_full, next_full = now, now + max(PSS_MIN_INTERVAL, cost / PSS_MAX_OVERHEAD)
        time.sleep(0.05)
    return peak_rss, peak_pss, peak_uss


def _cleaners(dump: Path, work: Path, workers: int) -> list[Cleaner]:
    cores = ",".join(str(c) for c in range(workers))
    pin = ["taskset", "-c", cores]
    ours_args = ["data", "clean", dump, "--workers", workers, "--quiet"]
    out_plain, out_nd = work / "ours.jsonl", work / "ours_near_dup.jsonl"
    cleaners = [
        Cleaner("ours", [*pin, *cli_argv([*ours_args, "-o", out_plain])], out_plain),
        Cleaner(
            "ours+near-dup",
            [*pin, *cli_argv([*ours_args, "-o", out_nd, "--near-dup", NEAR_DUP])],
            out_nd,
        ),
    ]
    env = baseline_env(work / "logs")
    for variant, (venv, requirement) in VARIANTS.items():
        python = ensure_fschat_venv(venv, requirement)
        version = package_version(python, "markdownify")
        out = work / f"fastchat_{variant}.json"
        argv = [str(python), "-m", "fastchat.data.clean_sharegpt"]
        argv += ["--in-file", str(dump), "--out-file", str(out)]
        cleaners.append(Cleaner(f"fastchat md{version}", [*pin, *argv], out, env))
    return cleaners


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="conversations to generate")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for all")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all four cleaners")
    parser.add_argument("--keep", metavar="DIR", help="keep the dump and outputs here")
    args = parser.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="clean-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    dump = work / "sharegpt_html.json"
    stats = generate_dump(dump, args.n)
    print(f"dump: {args.n} conversations, {stats.size / 2**20:.0f} MiB at {dump}")
    print(
        f"ASCII: {stats.ascii_chars / stats.chars:.2%} of the characters in turn values, "
        f"{stats.ascii_values / stats.values:.1%} of turn values entirely ASCII "
        f"({MIXED_SHARE:.0%} of conversations mix in non-English words)"
    )
    print("FastChat gets only structurally valid records (all generated records are valid).")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    cleaners = _cleaners(dump, work, args.workers)
    results: dict[str, list[Run]] = {c.name: [] for c in cleaners}
    # Units rotate each round; ours and ours+near-dup stay adjacent, their order flipping.
    units = [cleaners[:2], *([c] for c in cleaners[2:])]
    for r in range(args.rounds):
        rotated = units[r % len(units) :] + units[: r % len(units)]
        order = [c for unit in rotated for c in (unit[::-1] if r % 2 else unit)]
        for c in order:
            run = run_measured(c)
            results[c.name].append(run)
            print(
                f"round {r + 1} {c.name:18s} {args.n / run.seconds:7.1f} conv/s "
                f"{run.seconds:6.1f} s  CPU {run.cpu:6.1f} s  kept {run.kept:6d}  "
                f"RSS {run.rss / 2**20:5.0f} MiB  PSS {run.pss / 2**20:5.0f} MiB  "
                f"USS {run.uss / 2**20:5.0f} MiB",
                flush=True,
            )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return _print_summary(results, args.n, args.workers)


def _print_summary(results: dict[str, list[Run]], n: int, workers: int) -> int:
    def med(runs: list[Run], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs)

    rounds = len(next(iter(results.values())))
    print(f"\nmedians over {rounds} rounds, pinned to {workers} cores (memory: peak, MiB):")
    print(
        f"  {'cleaner':18s} {'conv/s':>7s} {'(min-max)':>15s} {'kept':>6s} "
        f"{'PSS':>6s} {'USS':>6s} {'RSS sum':>8s}"
    )
    rate: dict[str, float] = {}
    for name, runs in results.items():
        rates = [n / r.seconds for r in runs]
        rate[name] = statistics.median(rates)
        kept = sorted({r.kept for r in runs})
        print(
            f"  {name:18s} {rate[name]:7.1f} {f'({min(rates):.0f}-{max(rates):.0f})':>15s} "
            f"{'/'.join(map(str, kept)):>6s} {med(runs, 'pss') / 2**20:6.0f} "
            f"{med(runs, 'uss') / 2**20:6.0f} {med(runs, 'rss') / 2**20:8.0f}"
        )
    ours = results["ours"]
    for name in [k for k in results if k.startswith("fastchat")]:
        theirs = results[name]
        print(
            f"  ours / {name}: {rate['ours'] / rate[name]:.2f}x conv/s (target >= 2x), "
            f"PSS {med(ours, 'pss') / med(theirs, 'pss'):.3f}x (target <= 0.5x), "
            f"USS {med(ours, 'uss') / med(theirs, 'uss'):.3f}x, "
            f"summed RSS {med(ours, 'rss') / med(theirs, 'rss'):.3f}x"
        )
        print(f"    ours+near-dup / {name}: {rate['ours+near-dup'] / rate[name]:.2f}x conv/s")
    nd = results["ours+near-dup"]
    for what, attr in (("wall", "seconds"), ("CPU", "cpu")):
        ratios = [getattr(b, attr) / getattr(a, attr) for a, b in zip(ours, nd, strict=True)]
        print(
            f"  near-dup cost, {what} time of adjacent runs: {statistics.median(ratios):.2f}x "
            f"plain clean (target <= 1.5x); per round "
            + ", ".join(f"{x:.2f}x" for x in ratios)
            + f"; ratio of medians {med(nd, attr) / med(ours, attr):.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
