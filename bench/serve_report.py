"""Tables and checks of the serving benchmark, from its raw records (see ``serve_bench.py``).

A record is one load run: ``stack``, ``round``, ``level`` (concurrent clients), ``mode``
(``plain`` or ``stream``) and the summary of :func:`bench.serve_workload.summarize`
(plain runs also carry the level's ``peak_rss``). Medians over rounds are reported, with each
stack's best and worst round of generated tok/s: vLLM's CPU build swings with any other load on
2 cores, so the throughput target is judged against its *best* round as well as its median.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.serve_workload import PROMPTS

if TYPE_CHECKING:
    from bench.serve_bench import Bench

LABELS = {"ours": "ours", "vllm": "vLLM CPU", "fastchat": "FastChat"}
TARGET_VS_VLLM = 1.0  # ours' generated tok/s >= vLLM's at the top level
TARGET_VS_FASTCHAT = 4.0
TARGET_HOP_MS = 5.0
ROWS = [  # (label, mode, key, scale, format)
    ("generated tok/s", "plain", "tok_s", 1, "{:,.0f}"),
    ("  best round", "plain", "tok_s:max", 1, "{:,.0f}"),
    ("  worst round", "plain", "tok_s:min", 1, "{:,.0f}"),
    ("p50 latency s", "plain", "p50_latency", 1, "{:.3f}"),
    ("p95 latency s", "plain", "p95_latency", 1, "{:.3f}"),
    ("streaming tok/s", "stream", "tok_s", 1, "{:,.0f}"),
    ("p50 TTFT s (streaming)", "stream", "p50_ttft", 1, "{:.3f}"),
    ("p95 TTFT s (streaming)", "stream", "p95_ttft", 1, "{:.3f}"),
    ("peak RSS MiB (tree)", "plain", "peak_rss", 1 / 2**20, "{:,.0f}"),
    ("failed requests", "plain", "errors", 1, "{:.0f}"),
    ("machine load avg (1 min)", "plain", "load_avg", 1, "{:.1f}"),
]
NO_RATIO = {"errors", "load_avg"}


SUMMARIES = {"max": max, "min": min}


def over_rounds(records: list[dict], stack: str, level: int, mode: str, key: str) -> float | None:
    """``key`` over the rounds of one stack, level and mode (their median); None when not measured.
    ``key:max`` / ``key:min`` give the best / worst round instead."""
    key, _, summary = key.partition(":")
    values = [
        r[key]
        for r in records
        if (r["stack"], r["level"], r["mode"]) == (stack, level, mode) and r.get(key) is not None
    ]
    if not values:
        return None
    return SUMMARIES[summary](values) if summary else statistics.median(values)


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def _ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or not b else f"{a / b:.2f}x"


def level_table(records: list[dict], stacks: list[str], level: int, requests: int) -> str:
    """A markdown table of one concurrency level: each stack's medians and ours/theirs ratios."""
    peers = [s for s in stacks if s != "ours"] if "ours" in stacks else []
    head = [f"{level} clients, {requests} requests", *(LABELS[s] for s in stacks)]
    head += [f"ours/{LABELS[p]}" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for label, mode, key, scale, fmt in ROWS:
        values = {s: over_rounds(records, s, level, mode, key) for s in stacks}
        values = {s: None if v is None else v * scale for s, v in values.items()}
        cells = [_cell(values[s], fmt) for s in stacks]
        if key not in NO_RATIO:
            cells += [_ratio(values["ours"], values[p]) for p in peers]
        else:
            cells += [""] * len(peers)
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def target_lines(
    records: list[dict], stacks: list[str], level: int, hop_ms: float | None
) -> list[str]:
    """PASS/MISS against the issue's targets at ``level`` clients (those whose stacks ran)."""

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    lines = []
    ours = over_rounds(records, "ours", level, "plain", "tok_s")
    if ours and "vllm" in stacks:
        theirs = over_rounds(records, "vllm", level, "plain", "tok_s") or float("nan")
        best = over_rounds(records, "vllm", level, "plain", "tok_s:max") or float("nan")
        lines.append(
            f"{verdict(ours / best >= TARGET_VS_VLLM)} ours/vLLM generated tok/s at "
            f"{level} clients: {ours / theirs:.2f}x its median, {ours / best:.2f}x its best "
            f"round (target >= {TARGET_VS_VLLM}x, judged against its best round)"
        )
        a, b = (over_rounds(records, s, level, "stream", "p50_ttft") for s in ("ours", "vllm"))
        if a is not None and b is not None:
            lines.append(
                f"{verdict(a <= b)} p50 TTFT at {level} clients: ours {a:.3f} s, "
                f"vLLM {b:.3f} s (target: ours no worse)"
            )
    if ours and "fastchat" in stacks:
        theirs = over_rounds(records, "fastchat", level, "plain", "tok_s") or float("nan")
        lines.append(
            f"{verdict(ours / theirs >= TARGET_VS_FASTCHAT)} ours/FastChat generated "
            f"tok/s {ours / theirs:.1f}x (target >= {TARGET_VS_FASTCHAT:.0f}x)"
        )
    if hop_ms is not None:
        lines.append(
            f"{verdict(hop_ms <= TARGET_HOP_MS)} controller + API hop adds "
            f"{hop_ms:.1f} ms p50 (target <= {TARGET_HOP_MS:.0f} ms)"
        )
    return lines


def prompt_parity(records: list[dict], stacks: list[str]) -> str:
    """Whether every stack reported the same prompt token count for every prompt."""
    counts = {}
    for stack in stacks:
        merged: dict[int, Any] = {}
        for r in records:
            if r["stack"] == stack:
                merged.update({int(k): v for k, v in r["prompt_tokens"].items()})
        counts[stack] = [merged.get(i) for i in range(len(PROMPTS))]
    same = len({tuple(v) for v in counts.values()}) == 1
    shown = ", ".join(
        f"{LABELS[s]} {min(filter(None, v), default=0)}-{max(filter(None, v), default=0)}"
        for s, v in counts.items()
    )
    return f"prompt token counts identical per prompt across stacks: {same} ({shown})"


def greedy_lines(greedy: dict[str, dict[int, dict]]) -> list[str]:
    """One line per stack and level: answers equal to unbatched HF greedy, and the reference's
    top-2 logit margin where they first differ (the measured cause of a difference)."""
    lines = []
    for stack, by_level in greedy.items():
        for level, found in sorted(by_level.items()):
            margins = found["margins"]
            where = (
                f"; first differing step's top-2 logit margin in the reference: max "
                f"{max(margins):.4f}, median {statistics.median(margins):.4f}"
                if margins
                else ""
            )
            lines.append(
                f"{LABELS[stack]} at {level} clients: {found['equal']}/{found['total']} "
                f"answers equal unbatched HF greedy{where}"
            )
    return lines


def report(bench: Bench) -> dict[str, Any]:
    """Print the tables and checks; the raw numbers for ``--json``."""
    args, stacks = bench.args, bench.args.stacks
    hop_ms = None
    if bench.hops:
        direct, routed = (statistics.median(h[i] for h in bench.hops) for i in (0, 1))
        hop_ms = (routed - direct) * 1000
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nmax_tokens 64, temperature 0, ignore_eos, median of {args.rounds} rotating rounds; "
        f"load average now {load}"
    )
    for level in args.concurrency:
        print(f"\n{level_table(bench.records, stacks, level, bench.requests_at(level))}")
    print()
    for line in target_lines(bench.records, stacks, max(args.concurrency), hop_ms):
        print(line)
    print(f"\n{prompt_parity(bench.records, stacks)}")
    for line in greedy_lines(bench.greedy):
        print(line)
    eos = bench.tokenizer.eos_token_id
    print(
        f"reference greedy answers that contain EOS: "
        f"{sum(eos in r['ids'] for r in bench.references)}/{len(PROMPTS)}"
    )
    _print_counts(bench)
    return {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "records": bench.records,
        "greedy": bench.greedy,
        "hop_ms": hop_ms,
        "hops": bench.hops,
        "fastchat_sweep": bench.sweep,
        "fastchat_limit": bench.fastchat_limit,
        "streaming": bench.streaming_works,
        "uvloop": bench.uvloop,
        "vllm_idle": bench.vllm_idle,
    }


def _print_counts(bench: Bench) -> None:
    top = max(bench.args.concurrency)
    for r in bench.records:
        if r["level"] == top and r["mode"] == "plain" and r["round"] == 0 and r["requests"]:
            print(
                f"{r['stack']} at {top} clients: tokens per answer re-tokenised "
                f"{r['tokens'] / r['requests']:.1f}, usage {r['usage_tokens'] / r['requests']:.1f}"
            )
    if bench.sweep:
        swept = ", ".join(f"{k}: {v:,.0f}" for k, v in sorted(bench.sweep.items()))
        print(
            f"FastChat --limit-worker-concurrency sweep at {top} clients (tok/s): {swept}; "
            f"kept {bench.fastchat_limit}"
        )
    for name, works in bench.streaming_works.items():
        print(f"{name} streaming: {works}; uvloop loaded: {bench.uvloop.get(name)}")
    if bench.vllm_idle:
        cpu, wall = (sum(x[i] for x in bench.vllm_idle) for i in (0, 1))
        print(
            f"vLLM idle while the others ran: {cpu:.1f} CPU s over {wall:.0f} s "
            f"({100 * cpu / wall:.1f}% of one core)"
        )
    if bench.hops:
        direct, routed = (statistics.median(h[i] for h in bench.hops) for i in (0, 1))
        print(
            f"controller + API hop (1-token request, p50): worker direct {direct * 1000:.1f} "
            f"ms, via API {routed * 1000:.1f} ms"
        )
