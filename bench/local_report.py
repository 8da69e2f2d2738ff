"""What bench/local_bench.py prints: the table of medians, the same-answer check, and each
target's ratio with PASS or MISS (also returned as the JSON summary)."""

from __future__ import annotations

import argparse
import statistics
from typing import TYPE_CHECKING, Any

from bench.local_workload import FILE_TYPES, file_size

if TYPE_CHECKING:
    from bench.local_bench import Contender

MIB = 1024 * 1024
TARGET_VS_PEER = 0.90  # ours through our stack >= 90% of llama.cpp alone
TARGET_Q4_SPEEDUP = 4.0  # q4_K_M single-stream tokens/s >= 4x the torch worker's
TARGET_Q4_MEMORY = 0.35  # with <= 0.35x its resident memory

# The tokens/s compared with the targets. Decode tok/s assumes one token per streamed chunk; a
# server whose HTTP stream lags its engine sends several per chunk (ours coalesces them), which
# inflates it, so end-to-end tok/s (the whole request, TTFT included) is judged too.
METRICS = (
    ("1-stream decode", ("single", "decode_tok_s")),
    ("1-stream e2e", ("single", "e2e_tok_s")),
    ("N-stream aggregate", ("concurrent", "aggregate_tok_s")),
)


def median(runs: list[dict[str, Any]], *path: str) -> float:
    """Median over rounds of the value at ``path`` (e.g. "single", "decode_tok_s")."""
    values = []
    for run in runs:
        value: Any = run
        for part in path:
            value = value[part]
        values.append(float(value))
    return statistics.median(values)


COLUMNS = (  # header, path into a run, scale, format
    ("1-stream decode tok/s", ("single", "decode_tok_s"), 1, ".1f"),
    ("1-stream TTFT ms", ("single", "ttft_s"), 1000, ".0f"),
    ("1-stream e2e tok/s", ("single", "e2e_tok_s"), 1, ".1f"),
    ("N-stream tok/s", ("concurrent", "aggregate_tok_s"), 1, ".1f"),
    ("N-stream TTFT ms", ("concurrent", "ttft_s"), 1000, ".0f"),
    ("model RSS MiB", ("rss_model",), 1 / MIB, ".0f"),
    ("tree RSS MiB", ("rss_tree",), 1 / MIB, ".0f"),
)


def table(order: list[Contender], results: dict[str, list[dict[str, Any]]], streams: int) -> str:
    """A markdown table of the medians, one row per contender."""
    headers = ["contender", "file", "file MiB", "prompt tok", "tokens/req"]
    headers += [h.replace("N-", f"{streams}-") for h, *_ in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for contender in order:
        runs = results[contender.key]
        cells = [
            contender.label,
            contender.file_type,
            f"{file_size(contender.model) / MIB:.0f}",
            str(runs[0]["check"]["prompt_tokens"]),
            f"{median(runs, 'single', 'mean_tokens'):.0f}",
        ]
        cells += [f"{median(runs, *path) * scale:{fmt}}" for _h, path, scale, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def peer_ratios(
    order: list[Contender], results: dict[str, list[dict[str, Any]]]
) -> tuple[list[str], dict[str, Any]]:
    """Ours llama-cpp / each peer per file type, single-stream decode and N-stream aggregate;
    the target is judged against the strongest peer (the faster one on each metric)."""
    lines, summary = [], {}
    for kind in FILE_TYPES:
        mine = results.get(f"ours llama-cpp {kind}")
        peers = [c for c in order if c.stack != "ours" and c.file_type == kind]
        if not mine or not peers:  # left out with --only
            continue
        for metric, path in METRICS:
            ours_value = median(mine, *path)
            by_peer = {p.label: ours_value / median(results[p.key], *path) for p in peers}
            worst = min(by_peer.values())
            text = ", ".join(f"{ratio:.2f}x {label}" for label, ratio in by_peer.items())
            lines.append(
                f"{kind:7} {metric:19} ours/peer: {text}  "
                f"[{verdict(worst >= TARGET_VS_PEER)} >= {TARGET_VS_PEER:.2f}]"
            )
            summary[f"{kind} {metric}"] = by_peer
    return lines, summary


def q4_vs_torch(results: dict[str, list[dict[str, Any]]]) -> tuple[list[str], dict[str, Any]]:
    """q4_K_M through our llama-cpp backend vs the torch worker: speed and memory."""
    q4, torch_runs = results.get("ours llama-cpp q4_K_M"), results.get("ours torch fp32")
    if not q4 or not torch_runs:  # left out with --only
        return [], {}
    lines, summary = [], {}
    for metric, path in METRICS[:2]:
        speed = median(q4, *path) / median(torch_runs, *path)
        ok = verdict(speed >= TARGET_Q4_SPEEDUP)
        lines.append(f"q4_K_M / torch fp32, {metric:19} {speed:5.2f}x  "
                     f"[{ok} >= {TARGET_Q4_SPEEDUP:.0f}x]")  # fmt: skip
        summary[metric] = speed
    memory = median(q4, "rss_model") / median(torch_runs, "rss_model")
    tree = median(q4, "rss_tree") / median(torch_runs, "rss_tree")
    ok = verdict(memory <= TARGET_Q4_MEMORY)
    lines.append(f"q4_K_M / torch fp32, {'worker RSS':19} {memory:5.2f}x  "
                 f"[{ok} <= {TARGET_Q4_MEMORY}x] (whole process tree: {tree:.2f}x)")  # fmt: skip
    return lines, {**summary, "worker_memory": memory, "tree_memory": tree}


def same_answers(order: list[Contender], results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per file type, which servers gave llama_cpp.server's greedy text (the torch worker is
    compared at f16). Leading and trailing spaces are ignored: our API strips the reply's."""
    lines = []
    for kind in FILE_TYPES:
        texts = {
            c.key: results[c.key][0]["check"]["text"].strip()
            for c in order
            if c.file_type == kind or (kind == "f16" and c.file_type == "fp32")
        }
        if (reference := texts.get(f"llama_cpp.server {kind}")) is None:
            continue
        same = [name for name, text in texts.items() if text == reference]
        differ = [name for name, text in texts.items() if text != reference]
        lines.append(f"{kind}: same greedy answer as llama_cpp.server: {', '.join(same)}"
                     + (f"; different: {', '.join(differ)}" if differ else ""))  # fmt: skip
    return lines


def report(
    args: argparse.Namespace, order: list[Contender], results: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Print the table, the answer checks and the target ratios; the summary for the JSON."""
    print(
        f"\nmedians of {args.rounds} alternating rounds; {args.threads} threads "
        f"(torch worker: {args.torch_threads or args.threads}); max_tokens {args.max_tokens}; "
        f"{args.requests} single-stream requests; {args.streams} clients x "
        f"{args.per_stream} requests\n"
    )
    print(table(order, results, args.streams))
    print()
    for line in same_answers(order, results):
        print(line)
    peer_lines, peer_summary = peer_ratios(order, results)
    q4_lines, q4_summary = q4_vs_torch(results)
    print("\n" + "\n".join(peer_lines + q4_lines))
    return {"ours_vs_peers": peer_summary, "q4_vs_torch": q4_summary}
