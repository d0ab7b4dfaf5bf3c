"""How far a server moves between two runs of one benchmark: SGLang's bench_serving back to back, per launch variant.

    python bench/bench_server_steadiness.py --out DIR [--case canary/tp1 --case canary/tp1+graphs ...] [--runs 6]

A side-by-side of two tools (serving_perf's `bench_serving: true`) can only be read at 5 % on a server that moves
less than 5 % between two runs of one tool. This measures that movement, and what changes it, on a GPU machine
with SGLang: each case (a thresholds.yaml config; `+graphs` drops `--disable-cuda-graph` and captures decode CUDA
graphs up to `--cuda-graph-max-bs`, `+eager` turns graphs off) is launched once through the harness's own
lifecycle, and per CPU placement (`shared`: every process may run anywhere, as the suites run today; `pinned`: the
server's threads on the first half of the cores, bench_serving's on the other half; each row records how many
threads were placed) and shape (`light`: 16 x 256 -> 64, one at a time; `burst`: 200 x 256 -> 128 at once)
bench_serving runs `--runs` times back to back
(after one discarded run: the first run of a process imports sglang). Per metric it prints the median and the
run-to-run change (median |x[i+1] / x[i] - 1|, harness.evals.perf.side_by_side.run_to_run_change), and writes each
run as one JSON line to DIR/steadiness.jsonl as it arrives.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from harness.config.thresholds import load_thresholds  # noqa: E402
from harness.evals.perf.bench_serving import Driver, run_once  # noqa: E402
from harness.evals.perf.side_by_side import SHARED, run_to_run_change  # noqa: E402
from harness.evals.perf.workload import Workload  # noqa: E402
from harness.serve.engines import get_engine  # noqa: E402
from harness.serve.server import Server  # noqa: E402

SHAPES = {
    "light": {"input_len": 256, "output_len": 64, "num_prompts": 16, "max_concurrency": 1, "warmup": 2},
    "burst": {"input_len": 256, "output_len": 128, "num_prompts": 200, "request_rate": "inf", "warmup": 2},
}
PLACEMENTS = ("shared", "pinned")
VARIANTS = ("", "graphs", "eager")


def with_graphs(args: tuple[str, ...], max_bs: int) -> tuple[str, ...]:
    """The config's flags with decode CUDA graphs on: `--disable-cuda-graph` dropped, capture bounded to `max_bs`
    (unless the config bounds it already). Prefill stays eager (0.5.17 captures prefill too by default,
    `breakable` up to 2048 tokens)."""
    kept = tuple(a for a in args if a != "--disable-cuda-graph")
    added = () if "--disable-prefill-cuda-graph" in kept else ("--disable-prefill-cuda-graph",)
    added += () if "--cuda-graph-max-bs-decode" in kept else ("--cuda-graph-max-bs-decode", str(max_bs))
    return (*kept, *added)


def eager(args: tuple[str, ...]) -> tuple[str, ...]:
    """The config's flags with CUDA graphs off (the kit's default flags)."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--cuda-graph-max-bs-decode":
            skip = True
        elif arg not in ("--disable-prefill-cuda-graph", "--disable-cuda-graph"):
            kept.append(arg)
    return (*kept, "--disable-cuda-graph")


def threads_of(pids: list[int]) -> list[int]:
    """Every thread id of the given processes (affinity is per thread on Linux; a process's own call sets one)."""
    tids = []
    for pid in pids:
        try:
            tids += [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except FileNotFoundError:
            continue
    return tids


def tree(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [root.pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def place(pids: list[int], cpus: set[int]) -> int:
    placed = 0
    for tid in threads_of(pids):
        try:
            os.sched_setaffinity(tid, cpus)
            placed += 1
        except OSError:  # the thread ended, or the cpuset forbids it: counted as not placed
            continue
    return placed


def parse_case(case: str) -> tuple[str, str, str, str | None]:
    """MODEL/CONFIG[+graphs|+eager][@shared|@pinned] -> model, config, variant, placement (None: all)."""
    launch, _, only = case.partition("@")
    name, _, variant = launch.partition("+")
    if variant not in VARIANTS or (only and only not in PLACEMENTS) or name.count("/") != 1:
        raise SystemExit(f"--case {case!r}: expected MODEL/CONFIG[+graphs|+eager][@shared|@pinned]")
    model, config = name.split("/")
    return model, config, variant, only or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--case", action="append", help="MODEL/CONFIG[+graphs|+eager][@shared|@pinned] (default: canary/tp1, +graphs)"
    )
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--placements", nargs="+", default=list(PLACEMENTS), choices=list(PLACEMENTS))
    parser.add_argument("--cuda-graph-max-bs", type=int, default=256)
    parser.add_argument("--thresholds", default=str(REPO / "thresholds.yaml"))
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    thresholds = load_thresholds(opts.thresholds)
    cpus = sorted(os.sched_getaffinity(0))
    halves = set(cpus[: len(cpus) // 2]), set(cpus[len(cpus) // 2 :])
    print(
        f"cpus {len(cpus)}: server {min(halves[0])}-{max(halves[0])}, client {min(halves[1])}-{max(halves[1])}",
        flush=True,
    )
    table = []
    with open(opts.out / "steadiness.jsonl", "a", encoding="utf-8") as sink:
        for case in opts.case or ["canary/tp1", "canary/tp1+graphs"]:
            model, config, variant, only = parse_case(case)
            spec = thresholds.server_spec(model, config)
            if variant:
                from dataclasses import replace

                args = with_graphs(spec.args, opts.cuda_graph_max_bs) if variant == "graphs" else eager(spec.args)
                spec = replace(spec, config=f"{config}+{variant}", args=args)
            started = time.monotonic()
            try:
                server = Server(spec, get_engine(spec.engine), log_dir=opts.out / "logs").start()
            except Exception as exc:
                print(f"{case}: did not start: {str(exc)[:1500]}", flush=True)
                sink.write(json.dumps({"case": case, "error": str(exc)[:4000]}) + "\n")
                sink.flush()
                continue
            print(f"{case}: up in {time.monotonic() - started:.0f} s", flush=True)
            try:
                for placement in [only] if only else opts.placements:
                    table += measure_case(case, server, spec, placement, opts, halves, sink)
            finally:
                os.sched_setaffinity(0, set(cpus))
                server.stop()
    print("\n".join(["", "summary"] + table))


def measure_case(case: str, server: Server, spec, placement: str, opts, halves: tuple[set, set], sink) -> list[str]:
    """Every shape `opts.runs` times (after a discarded run) on one server and CPU placement; one line per shape."""
    server_cpus, client_cpus = halves
    all_cpus = server_cpus | client_cpus
    os.sched_setaffinity(0, client_cpus if placement == "pinned" else all_cpus)  # the driver inherits it
    tokenizer = spec.tokenizer_path or spec.model_path
    driver, lines = Driver(), []
    try:
        for shape in opts.shapes:
            workload = Workload.from_options(shape, SHAPES[shape], "bench")
            runs = []
            for k in range(opts.runs + 1):
                # again each run: SGLang and the driver start threads lazily
                client = tree(driver.proc.pid) if driver.proc else []
                if placement == "pinned":
                    placed = place(tree(server.pid), server_cpus) + place(client, client_cpus)
                else:
                    placed = place(tree(server.pid) + client, all_cpus)
                got = run_once(server.base_url, tokenizer, workload, k, opts.out / "bs.jsonl", driver=driver)
                row = {
                    "case": case,
                    "placement": placement,
                    "threads_placed": placed,
                    "shape": shape,
                    "run": k,
                    "discarded": k == 0,
                    **got,
                }
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                if "error" in got:
                    print(f"{case} {placement} {shape} run {k}: {got['error'][:600]}", flush=True)
                    break
                if k:
                    runs.append(got)
            lines.append(summary_line(case, placement, shape, runs))
            print(lines[-1], flush=True)
    finally:
        driver.close()
    return lines


def summary_line(case: str, placement: str, shape: str, runs: list[dict]) -> str:
    parts = []
    for key in SHARED:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if len(values) < 2 or key == "concurrency":
            continue
        move = run_to_run_change(values)
        parts.append(f"{key} {statistics.median(values):.4g} ({move:.1%}, {min(values):.4g}..{max(values):.4g})")
    return f"{case} {placement} {shape} x{len(runs)}: median (run to run, range): " + "; ".join(parts)


if __name__ == "__main__":
    main()
