"""bench_serving beside the harness: each shared metric's medians, the paired difference of each harness repeat
against the bench_serving run beside it, each tool's run-to-run change, and the judgement (a metric is judged only
where both tools held within TOLERANCE between their own runs). `rejudge` re-reads a run's samples file by today's
rule (`python -m harness.evals.perf.bench_serving SAMPLES.jsonl`)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

# The metrics both tools report, compared side by side.
SHARED = (
    "output_throughput",
    "input_throughput",
    "request_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "median_tpot_ms",
    "median_e2e_latency_ms",
    "concurrency",
)
TOLERANCE = 0.05


def run_to_run_change(values: list[float]) -> float | None:
    """The median relative change from one run to the next, |x[i+1] / x[i] - 1| (None under two runs): how far
    the server itself moves between two consecutive runs of one tool (one or two harness runs lie between them,
    as the order alternates)."""
    steps = [abs(b / a - 1) for a, b in zip(values, values[1:]) if a]
    return statistics.median(steps) if steps else None


def side_by_side(name: str, ours: list[dict], theirs: list[dict], tolerance: float = TOLERANCE) -> dict:
    """Per shared metric: both tools' medians over repeats and spreads, each harness repeat against the
    bench_serving run beside it (paired; same server state, give or take the drift between two runs), and each
    tool's own run-to-run change. A metric is judged on its paired median, and not judged where either tool's
    run-to-run change exceeds `tolerance`: the server moved more between two runs of one tool than the bar allows
    (on the H200, SGLang's light-load median ITL moved 3.8-32 % from run to run, 2026-12-03). Both tools count:
    on the canary, bench_serving's light ITL moved a median 1.6 % over four runs while the harness's runs between
    them moved 12-30 %, and the paired gap of one shape went from +14.6 % in one run to -8.6 % in the next
    (2026-12-04, docs/validation/2026-12-04-h200-canary). With one run there is no run-to-run change, and nothing
    is judged."""
    ok = [t for t in theirs if "error" not in t]
    runs = [{k: v for k, v in t.items() if k != "by_request"} for t in theirs]  # per request: samples only
    block: dict = {"bench_serving_runs": runs, "tolerance": tolerance, "metrics": {}}
    if not ok:
        first = theirs[0]["error"] if theirs else "not run"
        block["line"] = f"bench_serving {name}: failed in every repeat ({first})"
        return block
    for key in SHARED:
        mine = [s[key] for s in ours if isinstance(s.get(key), (int, float))]
        other = [t[key] for t in ok if isinstance(t.get(key), (int, float))]
        if not mine or not other or not statistics.median(other):
            continue
        a, b = statistics.median(mine), statistics.median(other)
        pairs = [
            (s[key] - t[key]) / t[key]
            for s, t in zip(ours, theirs)
            if "error" not in t
            and isinstance(s.get(key), (int, float))
            and isinstance(t.get(key), (int, float))
            and t[key]
        ]
        paired = statistics.median(pairs) if pairs else None
        moves, ours_moves = run_to_run_change(other), run_to_run_change(mine)
        held = moves is not None and ours_moves is not None and max(moves, ours_moves) <= tolerance
        block["metrics"][key] = {
            "harness": a,
            "bench_serving": b,
            "relative_difference": (a - b) / b,
            "paired_relative_differences": pairs,
            "paired_median": paired,
            "bench_serving_run_to_run": moves,
            "harness_run_to_run": ours_moves,
            "judged": held,
            "within_tolerance": abs(paired if paired is not None else (a - b) / b) <= tolerance,
            "harness_spread": [min(mine), max(mine)],
            "bench_serving_spread": [min(other), max(other)],
        }
    metrics = block["metrics"]
    judged = [k for k, m in metrics.items() if m["judged"]]
    outside = [k for k in judged if not metrics[k]["within_tolerance"]]
    noisy = [k for k, m in metrics.items() if not m["judged"]]
    verdict = f"{len(judged) - len(outside)} of {len(judged)} judged metrics within {tolerance:.0%}"
    verdict += f", outside: {', '.join(outside)}" if outside else ""
    if noisy:
        if len(ok) < 2 or len(ours) < 2:
            verdict += f"; not judged, a tool ran once: {', '.join(noisy)}"
        else:  # the harness alone moving is named apart: that is jitter the comparison is there to catch
            alone = [k for k in noisy if (metrics[k]["bench_serving_run_to_run"] or math.inf) <= tolerance]
            both = [k for k in noisy if k not in alone]
            verdict += (
                f"; not judged, bench_serving moved more than {tolerance:.0%} run to run: {', '.join(both)}"
                if both
                else ""
            )
            verdict += (
                f"; not judged, the harness alone moved more than {tolerance:.0%}: {', '.join(alone)}" if alone else ""
            )
    parts = ", ".join(_metric_part(k, m) for k, m in metrics.items())
    block["line"] = (
        f"bench_serving {name} ({len(ok)} of {len(theirs)} runs): {verdict}; harness vs bench_serving "
        f"(medians; paired; run to run, harness and bench_serving): {parts}"
    )
    return block


def _metric_part(key: str, m: dict) -> str:
    part = f"{key} {m['relative_difference']:+.1%}"
    if m["paired_median"] is not None:
        part += f" (paired {m['paired_median']:+.1%}"
        moves = (m["harness_run_to_run"], m["bench_serving_run_to_run"])
        part += f"; {moves[0]:.1%}, {moves[1]:.1%})" if None not in moves else ")"
    return part


def rejudge(samples: Path) -> list[str]:
    """The side-by-side line of every workload in a run's serving_perf samples file
    (`samples/serving_perf__<model>__<config>.jsonl`: one row per repeat of each tool), by today's rule."""
    import json

    rows = [json.loads(line) for line in Path(samples).read_text(encoding="utf-8").splitlines() if line.strip()]
    names = list(dict.fromkeys(r["workload"] for r in rows))
    lines = []

    def of(name: str, tool: str | None) -> list[dict]:  # by repeat: repeat k of one tool beside repeat k of the other
        return sorted(
            (r for r in rows if r["workload"] == name and r.get("tool") == tool), key=lambda r: r.get("repeat", 0)
        )

    for name in names:
        ours, theirs = of(name, None), of(name, "bench_serving")
        lines.append(side_by_side(name, ours, theirs)["line"] if theirs else f"{name}: no bench_serving run")
        lines += [line for line in [ttft_by_request(name, ours, theirs)] if line]
    return lines


def ttft_by_request(name: str, ours: list[dict], theirs: list[dict]) -> str | None:
    """Request k of a harness repeat against request k of the bench_serving run beside it (the same prompt, with
    `same`): the median and quartiles of the TTFT differences, how often the harness's was higher, and, where
    the harness sent one request at a time, its gap from one answer to the next send. None without per-request
    TTFTs (runs before --output-details, or `own` prompts, whose requests differ)."""
    import numpy as np

    diffs, gaps = [], []
    for mine, other in zip(ours, theirs):
        a, b = (mine.get("by_request") or {}), (other.get("by_request") or {})
        if other.get("prompts") != "same" or not a.get("ttft_ms") or len(a["ttft_ms"]) != len(b.get("ttft_ms") or []):
            continue
        diffs += [x - y for x, y in zip(a["ttft_ms"], b["ttft_ms"]) if x is not None and y]
        starts, e2e = a["start_ms"], a["e2e_ms"]
        steps = [starts[k + 1] - starts[k] - e2e[k] for k in range(len(starts) - 1) if e2e[k] is not None]
        gaps += steps if steps and min(steps) >= 0 else []  # sequential sends only
    if not diffs:
        return None
    q1, mid, q3 = np.percentile(diffs, [25, 50, 75])
    line = (
        f"{name} TTFT by request, harness - bench_serving: median {mid:+.2f} ms (quartiles {q1:+.2f}, {q3:+.2f}), "
        f"harness higher in {sum(d > 0 for d in diffs)} of {len(diffs)}"
    )
    return line + (f"; harness's gap from an answer to its next send: median {np.median(gaps):.2f} ms" if gaps else "")
