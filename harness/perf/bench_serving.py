"""The same workloads through SGLang's own `python -m sglang.bench_serving`, against the same server, in the same run.

Per workload: `--backend sglang --dataset-name random-ids` (random token ids, no dataset download) with the
workload's lengths (`--random-range-ratio`), prompt count, request rate, max concurrency and warm-up, its JSONL
result read back. Side by side with the harness's median over repeats for every metric both tools report; the
relative difference goes to details and a note, not into a verdict (the two runs are not the same requests at the
same moment; the harness run is the gated one). bench_serving runs in its own process group and is killed and
reaped if it outlives `timeout_s`.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import process_group

SHARED = ("output_throughput", "input_throughput", "request_throughput", "median_ttft_ms", "p99_ttft_ms",
          "median_itl_ms", "p99_itl_ms", "median_tpot_ms", "median_e2e_latency_ms", "concurrency")  # fmt: skip


def command(base_url: str, tokenizer: str, workload, seed: int, output: Path) -> list[str]:
    rate = "inf" if math.isinf(workload.request_rate) else str(workload.request_rate)
    cmd = [sys.executable, "-m", "sglang.bench_serving", "--backend", "sglang", "--base-url", base_url,
           "--dataset-name", "random-ids", "--random-input-len", str(workload.input_len),
           "--random-output-len", str(workload.output_len), "--random-range-ratio", str(workload.range_ratio),
           "--num-prompts", str(workload.num_prompts), "--request-rate", rate, "--tokenizer", tokenizer,
           "--seed", str(seed), "--warmup-requests", str(workload.warmup), "--output-file", str(output), "--disable-tqdm"]  # fmt: skip
    if workload.max_concurrency:
        cmd += ["--max-concurrency", str(workload.max_concurrency)]
    return cmd


def cross_check(ctx, workloads, harness_results: dict, seed: int, timeout_s: float = 300.0) -> dict:
    out: dict = {"workloads": {}, "lines": []}
    tokenizer = ctx.tokenizer_path or ctx.model_path
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as folder:
        for workload in workloads:
            result_file = Path(folder) / f"{workload.name}.jsonl"
            cmd = command(ctx.client.base_url, tokenizer, workload, seed, result_file)
            ran = _run(cmd, timeout_s)
            if ran["returncode"] != 0 or not result_file.is_file():
                out["workloads"][workload.name] = {"command": cmd, **ran}
                out["lines"].append(f"bench_serving {workload.name}: failed (exit {ran['returncode']}): {ran['tail'][-300:]}")
                continue
            theirs = json.loads(result_file.read_text().splitlines()[-1])
            ours = {k: statistics.median(s[k] for s in harness_results[workload.name]["repeats"] if k in s)
                    for k in SHARED if all(k in s for s in harness_results[workload.name]["repeats"])}  # fmt: skip
            rel = {k: (ours[k] - theirs[k]) / theirs[k] for k in ours if isinstance(theirs.get(k), (int, float)) and theirs[k]}
            out["workloads"][workload.name] = {"command": cmd, "bench_serving": {k: theirs.get(k) for k in SHARED},
                                               "harness": ours, "relative_difference": rel}  # fmt: skip
            worst = max(rel.items(), key=lambda kv: abs(kv[1]), default=(None, 0.0))
            out["lines"].append(f"bench_serving {workload.name}: largest difference {worst[0]} {worst[1]:+.1%} "
                                f"({', '.join(f'{k} {v:+.1%}' for k, v in rel.items())})")  # fmt: skip
    return out


def _run(cmd: list[str], timeout_s: float) -> dict:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    process_group.register(proc.pid)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process_group.kill_group_now(proc.pid)
        output, _ = proc.communicate()
    finally:
        process_group.unregister(proc.pid)
    return {"returncode": proc.returncode, "tail": output.decode(errors="replace")[-2000:]}
