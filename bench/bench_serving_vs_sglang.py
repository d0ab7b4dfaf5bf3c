"""serving_perf's client and SGLang's own `sglang.bench_serving` against one server whose timing is known.

tests/servers/timed_stream_server.py streams every request's first token after TTFT and then one token per ITL
on a fixed schedule, so the truth is known: TTFT 50 ms, ITL = TPOT 10 ms, E2E 50 + 63 × 10 = 680 ms for 64 tokens.
Both tools send the same shape (256 → 64 tokens as input ids, one at a time, 16 requests, 2 warm-up) through the
same code the serving_perf suite runs (harness.evals.perf.measure; harness.evals.perf.bench_serving.run_once,
bench_serving's `--backend sglang --dataset-name random-ids --tokenize-prompt`), three times each, alternating (the
harness first in every repeat); the table prints the truth, each tool's median over the three and its error.
`--prompts same` (the suite's default) hands bench_serving the harness's requests of each repeat through the driver,
and the server's log of prompts checks it sent exactly those; `own` lets it draw its own. bench_serving comes from
the `sglang` tox env (`tox -e sglang` builds it; `--site` picks 0.5.17, the default, or 0.5.23); its CPU-only
imports need the main venv's packages on the path beside it, and four more it imports at module level that the
parser env lacks (installed apart, without their dependencies; 0.5.23 also needs the 0.5.17 dir's torchvision after
it):

    pip install --target /tmp/bench-serving-extra --no-deps einops gguf compressed-tensors loguru
    python bench/bench_serving_vs_sglang.py --extra /tmp/bench-serving-extra
    python bench/bench_serving_vs_sglang.py --site .tox/sglang/sglang-sites/0.5.23 \
        --extra /tmp/bench-serving-extra:.tox/sglang/sglang-sites/0.5.17
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from serving_perf_support import timed_server  # noqa: E402

from harness.evals.perf.bench_serving import Driver, run_once  # noqa: E402
from harness.evals.perf.workload import Workload  # noqa: E402

TRUTH = {
    "median_ttft_ms": 50.0,
    "median_itl_ms": 10.0,
    "median_tpot_ms": 10.0,
    "median_e2e_latency_ms": 680.0,
    "output_throughput": 64 / 0.68,
}
SHAPE = {"input_len": 256, "output_len": 64, "num_prompts": 16, "max_concurrency": 1, "warmup": 2}


def requests_of(workload: Workload, seed: int) -> list:
    from harness.evals.perf.workload import build_requests

    return build_requests(workload, list(range(10, 400)), seed)


def harness_once(url: str, workload: Workload, seed: int) -> dict:
    from harness.evals.perf.measure import summarize
    from harness.evals.serving_perf import _send

    requests = requests_of(workload, seed)
    asyncio.run(_send(url + "/generate", requests[: workload.warmup], float("inf"), 1, seed, 60))
    timings, duration, _ = asyncio.run(
        _send(url + "/generate", requests[workload.warmup :], workload.request_rate, workload.max_concurrency, seed, 60)
    )
    return summarize(timings, duration)


def logged_prompts(log: Path, count: int) -> list[tuple[int, int]]:
    """The last `count` requests the timed server answered: (hash of the prompt's ids, output tokens)."""
    import json

    lines = [json.loads(line) for line in log.read_text().splitlines() if '"prompt"' in line]
    return [(line["prompt"], line["sends"][-1][1]) for line in lines[-count:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=str(REPO / ".tox" / "sglang" / "bin" / "python"))
    parser.add_argument("--site", default=str(REPO / ".tox" / "sglang" / "sglang-sites" / "0.5.17"))
    parser.add_argument("--extra", default=None, help="a folder with einops, gguf, compressed-tensors (see above)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--prompts",
        choices=("same", "own"),
        default="same",
        help="same: bench_serving sends the harness's requests; own: its random-ids. Default: %(default)s",
    )
    opts = parser.parse_args()
    paths = [opts.site, sysconfig.get_paths()["purelib"], *([opts.extra] if opts.extra else [])]
    # HF_HUB_OFFLINE: bench_serving looks the served model's name ("timed/model") up on the hub for its config, and
    # without it spent 46 s of each run retrying an unreachable huggingface.co (2026-12-02).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "HF_HUB_OFFLINE": "1"}
    workload = Workload.from_options("light", SHAPE, "bench")
    ours, theirs = [], []
    driver = Driver(python=opts.python, env=env)  # as the suite runs it: one bench_serving process for all repeats
    sent_same = []
    with (
        tempfile.TemporaryDirectory() as folder,
        timed_server("--ttft-ms", "50", "--itl-ms", "10", "--log", str(Path(folder, "server.jsonl"))) as url,
    ):
        log = Path(folder, "server.jsonl")
        try:
            for repeat in range(opts.repeats):
                ours.append(harness_once(url, workload, repeat))
                measured = requests_of(workload, repeat)[workload.warmup :]
                mine = logged_prompts(log, len(measured))
                rows = [{"prompt": p, "prompt_len": len(p), "output_len": n} for p, n in measured]
                theirs.append(
                    run_once(
                        url,
                        str(REPO / "assets" / "canary" / "model"),
                        workload,
                        repeat,
                        Path(folder, f"{repeat}.jsonl"),
                        driver=driver,
                        requests=rows if opts.prompts == "same" else None,
                    )
                )
                if "error" in theirs[-1]:
                    sys.exit(f"bench_serving failed: {theirs[-1]['error']}")
                sent_same.append(logged_prompts(log, len(measured)) == mine)
        finally:
            driver.close()
    print(
        "bench_serving wall s per run (one process; the first imports sglang): "
        + ", ".join(f"{t['wall_s']:.1f}" for t in theirs)
    )
    print(
        f"bench_serving prompts: {opts.prompts}; it sent the harness's exact requests (ids, output lengths) in "
        f"{sum(sent_same)} of {len(sent_same)} runs"
    )
    print(f"16 requests of 256 -> 64 tokens, one at a time, TTFT 50 ms, ITL 10 ms; medians of {opts.repeats} runs each")
    print(f"{'metric':<24}{'truth':>9}{'harness':>10}{'error':>8}{'bench_serving':>15}{'error':>8}")
    for key, truth in TRUTH.items():
        a, b = statistics.median(s[key] for s in ours), statistics.median(t[key] for t in theirs)
        print(f"{key:<24}{truth:>9.2f}{a:>10.2f}{(a - truth) / truth:>+8.1%}{b:>15.2f}{(b - truth) / truth:>+8.1%}")


if __name__ == "__main__":
    main()
