"""The same workloads through SGLang's own `python -m sglang.bench_serving`, against the same server, in the same run.

Per workload and repeat, right after the harness's own repeat (so both tools see the server in the same state,
and drift between repeats hits both alike): `--backend sglang --dataset-name random-ids --tokenize-prompt`
(random token ids sent as `input_ids`, so input lengths are exact, no dataset download) with the workload's
lengths (`--random-range-ratio`), or for a `sharegpt` workload `--dataset-name sharegpt` on the same file (the
same texts: random ids are not the same ids in both tools, bench_serving draws over the whole vocabulary,
special tokens included), prompt count, request rate, max concurrency, warm-up and `--flush-cache` (as the
harness flushes before each repeat), its JSONL result read
back (from a temporary directory) and kept in the suite's details and samples. Side by side: the median over repeats of each tool for every metric both report,
their relative difference against `tolerance` (5 %, the issue's bar), and each tool's own spread, so a difference
inside the run-to-run spread reads as such. The comparison goes to details and notes, not into a verdict (the two
tools send different requests at different moments; the harness run is the gated one). bench_serving runs in its
own process group and is killed and reaped if it outlives `timeout_s`.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

from harness import process_group

SHARED = ("output_throughput", "input_throughput", "request_throughput", "median_ttft_ms", "p99_ttft_ms",
          "median_itl_ms", "p99_itl_ms", "median_tpot_ms", "median_e2e_latency_ms", "concurrency")  # fmt: skip
TOLERANCE = 0.05


def command(base_url: str, tokenizer: str, workload, seed: int, output: Path, python: str = sys.executable,
            dataset_path: Path | None = None, flush_cache: bool = True) -> list[str]:
    """`random` workloads as `random-ids --tokenize-prompt`; `sharegpt` ones read the same file (`dataset_path`,
    resolved by the caller), their first turns sent as text, the output length fixed to the workload's."""
    rate = "inf" if math.isinf(workload.request_rate) else str(workload.request_rate)
    cmd = [python, "-m", "sglang.bench_serving", "--backend", "sglang", "--base-url", base_url]
    if workload.dataset == "sharegpt":
        cmd += ["--dataset-name", "sharegpt", "--dataset-path", str(dataset_path or workload.dataset_path),
                "--sharegpt-context-len", str(workload.input_len + workload.output_len)]  # fmt: skip
        if workload.fixed_output:
            cmd += ["--sharegpt-output-len", str(workload.output_len)]
    else:
        cmd += ["--dataset-name", "random-ids", "--tokenize-prompt", "--random-input-len", str(workload.input_len),
                "--random-output-len", str(workload.output_len), "--random-range-ratio", str(workload.range_ratio)]  # fmt: skip
    cmd += ["--num-prompts", str(workload.num_prompts), "--request-rate", rate, "--tokenizer", tokenizer,
            "--seed", str(seed), "--warmup-requests", str(workload.warmup), "--output-file", str(output), "--disable-tqdm"]  # fmt: skip
    if workload.max_concurrency:
        cmd += ["--max-concurrency", str(workload.max_concurrency)]
    if flush_cache:
        cmd += ["--flush-cache"]
    return cmd


def run_once(base_url: str, tokenizer: str, workload, seed: int, output: Path, timeout_s: float = 300.0,
             python: str = sys.executable, env: dict | None = None, **how) -> dict:
    """One bench_serving run of `workload`: its summary fields, or `error` with the command's exit and output tail."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    cmd = command(base_url, tokenizer, workload, seed, output, python, **how)
    ran = _run(cmd, timeout_s, env)
    if ran["returncode"] != 0 or not output.is_file():
        return {"command": cmd, "error": f"exit {ran['returncode']}: {ran['tail'][-300:]}"}
    theirs = json.loads(output.read_text().splitlines()[-1])
    return {"command": cmd, "wall_s": ran["wall_s"], **{k: theirs.get(k) for k in SHARED}}


def side_by_side(name: str, ours: list[dict], theirs: list[dict], tolerance: float = TOLERANCE) -> dict:
    """Both tools' medians over repeats per shared metric, the relative difference and each tool's spread."""
    ok = [t for t in theirs if "error" not in t]
    block: dict = {"bench_serving_runs": theirs, "tolerance": tolerance, "metrics": {}}
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
        block["metrics"][key] = {"harness": a, "bench_serving": b, "relative_difference": (a - b) / b,
                                 "within_tolerance": abs(a - b) <= tolerance * abs(b),
                                 "harness_spread": [min(mine), max(mine)], "bench_serving_spread": [min(other), max(other)]}  # fmt: skip
    outside = [k for k, m in block["metrics"].items() if not m["within_tolerance"]]
    parts = ", ".join(f"{k} {m['relative_difference']:+.1%}" for k, m in block["metrics"].items())
    verdict = f"all {len(block['metrics'])} shared metrics within {tolerance:.0%}" if not outside else \
        f"{len(outside)} of {len(block['metrics'])} outside {tolerance:.0%} ({', '.join(outside)})"
    block["line"] = f"bench_serving {name} ({len(ok)} of {len(theirs)} runs): {verdict}; harness vs bench_serving: {parts}"
    return block


def _run(cmd: list[str], timeout_s: float, env: dict | None = None) -> dict:
    import time

    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    process_group.register(proc.pid)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process_group.kill_group_now(proc.pid)
        output, _ = proc.communicate()
    finally:
        process_group.unregister(proc.pid)
    return {"returncode": proc.returncode, "tail": output.decode(errors="replace")[-2000:],
            "wall_s": round(time.monotonic() - started, 1)}  # fmt: skip
