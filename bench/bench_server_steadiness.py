"""How far a server moves between two runs of one benchmark: SGLang's bench_serving back to back, per launch variant.

    python bench/bench_server_steadiness.py --out DIR [--case canary/tp1 --case canary/tp1+graphs ...] [--runs 6]

A side-by-side of two tools (serving_perf's `bench_serving: true`) can only be read at 5 % on a server that moves
less than 5 % between two runs of one tool. This measures that movement, and what changes it, on a GPU machine
with SGLang: each case (a thresholds.yaml config; `+graphs` drops `--disable-cuda-graph` and captures CUDA graphs
up to `--cuda-graph-max-bs`) is launched once through the harness's own lifecycle, and per CPU placement
(`shared`: every process may run anywhere, as the suites run today; `pinned`: the server's threads on the first
half of the cores, bench_serving's on the other half) and shape (`light`: 16 x 256 -> 64, one at a time;
`saturating`: 200 x 256 -> 128 at once; serving_perf's defaults) bench_serving runs `--runs` times back to back
(after one discarded run: the first run of a process imports sglang). Per metric it prints the median and the
run-to-run change (median |x[i+1] / x[i] - 1|, harness.perf.bench_serving.run_to_run_change), and writes each
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

from harness.config import load_thresholds  # noqa: E402
from harness.perf.bench_serving import SHARED, Driver, run_once, run_to_run_change  # noqa: E402
from harness.perf.workload import Workload  # noqa: E402
from harness.server import Server  # noqa: E402

SHAPES = {
    "light": {"input_len": 256, "output_len": 64, "num_prompts": 16, "max_concurrency": 1, "warmup": 2},
    "saturating": {"input_len": 256, "output_len": 128, "num_prompts": 200, "request_rate": "inf", "warmup": 2},
}
PLACEMENTS = ("shared", "pinned")


def with_graphs(args: tuple[str, ...], max_bs: int) -> tuple[str, ...]:
    """The config's flags with decode CUDA graphs on: `--disable-cuda-graph` dropped, capture bounded to `max_bs`.
    Prefill stays eager (0.5.17 captures prefill too by default, `breakable` up to 2048 tokens)."""
    kept = tuple(a for a in args if a != "--disable-cuda-graph")
    return (*kept, "--disable-prefill-cuda-graph", "--cuda-graph-max-bs-decode", str(max_bs))


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
        except (ProcessLookupError, PermissionError, OSError):
            continue
    return placed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--case", action="append", help="MODEL/CONFIG[+graphs][@shared|@pinned] (default: canary/tp1, +graphs)")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--placements", nargs="+", default=list(PLACEMENTS), choices=list(PLACEMENTS))
    parser.add_argument("--cuda-graph-max-bs", type=int, default=256)
    parser.add_argument("--thresholds", default=str(REPO / "thresholds.yaml"))
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    sink = open(opts.out / "steadiness.jsonl", "a", encoding="utf-8")
    thresholds = load_thresholds(opts.thresholds)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = set(cpus[: len(cpus) // 2]), set(cpus[len(cpus) // 2 :])
    print(f"cpus {len(cpus)}: server {min(server_cpus)}-{max(server_cpus)}, client {min(client_cpus)}-{max(client_cpus)}", flush=True)
    table = []
    for case in opts.case or ["canary/tp1", "canary/tp1+graphs"]:
        case, _, only = case.partition("@")
        name, _, variant = case.partition("+")
        model, config = name.split("/")
        spec = thresholds.server_spec(model, config)
        if variant == "graphs":
            from dataclasses import replace

            spec = replace(spec, config=f"{config}+graphs", args=with_graphs(spec.args, opts.cuda_graph_max_bs))
        started = time.monotonic()
        try:
            server = Server(spec, log_dir=opts.out / "logs").start()
        except Exception as exc:  # noqa: BLE001 - a case that does not start is a result too
            print(f"{case}: did not start: {str(exc)[:1500]}", flush=True)
            sink.write(json.dumps({"case": case, "error": str(exc)[:4000]}) + "\n")
            sink.flush()
            continue
        print(f"{case}: up in {time.monotonic() - started:.0f} s", flush=True)
        tokenizer = spec.tokenizer_path or spec.model_path
        driver = Driver()
        try:
            for placement in [only] if only else opts.placements:
                all_cpus = set(cpus)
                os.sched_setaffinity(0, client_cpus if placement == "pinned" else all_cpus)
                for shape in opts.shapes:
                    workload = Workload.from_options(shape, SHAPES[shape], "bench")
                    runs = []
                    for k in range(opts.runs + 1):
                        if placement == "pinned":  # again each run: SGLang and the driver start threads lazily
                            place(tree(server.pid), server_cpus)
                            if driver.proc is not None:
                                place(tree(driver.proc.pid), client_cpus)
                        else:
                            place(tree(server.pid) + (tree(driver.proc.pid) if driver.proc else []), all_cpus)
                        got = run_once(server.base_url, tokenizer, workload, k, opts.out / "bs.jsonl", driver=driver)
                        row = {"case": case, "placement": placement, "shape": shape, "run": k, "discarded": k == 0, **got}
                        sink.write(json.dumps(row) + "\n")
                        sink.flush()
                        if "error" in got:
                            print(f"{case} {placement} {shape} run {k}: {got['error'][:600]}", flush=True)
                            break
                        if k:
                            runs.append(got)
                    line = summary_line(case, placement, shape, runs)
                    table.append(line)
                    print(line, flush=True)
        finally:
            driver.close()
            os.sched_setaffinity(0, set(cpus))
            server.stop()
    print("\n".join(["", "summary"] + table))


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
