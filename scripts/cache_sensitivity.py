"""How small a cache bug the cache-hit suites see: clean runs and hit-only logprob shifts, in sets, on one server.

    python scripts/cache_sensitivity.py --out DIR [--configs canary/tp1 ...] [--shifts 0 0.02 0.05 0.1]
        [--samples 320] [--set-size 16] [--suites ...] [--max-concurrency 64] [--thresholds thresholds.yaml]

For each config of thresholds.yaml: launch its server once (the harness's own lifecycle), and for each shift put
`tests/servers/fault_proxy.py --fault shift-hits --shift S` in front of it (attach mode: it lowers every output
logprob of an answer with cached_tokens > 0 by S nats and touches nothing else), run both cache-hit suites with
`--samples` prompts, then split the prompts into sets of `--set-size` and judge each set as a run of the suite
would be judged: `kl_div` against the config's bound, `hit_shift` with the config's sign-flip test (α, min_effect
from thresholds.yaml). Also the smallest shift the test detects at α = 0.05 with power 0.8, from the clean units.
Writes DIR/<model>__<config>.json after each config and prints one line per (config, suite, shift).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.client.http import Client, ClientOptions  # noqa: E402
from harness.config.thresholds import load_thresholds  # noqa: E402
from harness.evals.logprob_decode_cache_hit import LogprobDecodeCacheHit  # noqa: E402
from harness.evals.logprob_prefill_cache_hit import LogprobPrefillCacheHit  # noqa: E402
from harness.evals.types import EvalContext  # noqa: E402
from harness.serve.engines import get_engine  # noqa: E402
from harness.serve.process_group import free_port, kill_group_now  # noqa: E402
from harness.serve.server import Server  # noqa: E402
from harness.verdict.checks import ShiftTest, check_shift, criterion_of  # noqa: E402
from harness.verdict.statistics import z_quantile  # noqa: E402

SUITES = {"logprob_prefill_cache_hit": LogprobPrefillCacheHit, "logprob_decode_cache_hit": LogprobDecodeCacheHit}
PROXY = REPO / "tests" / "servers" / "fault_proxy.py"


@contextlib.contextmanager
def shifting_proxy(upstream: str, shift: float):
    port = free_port()
    command = [
        sys.executable,
        str(PROXY),
        "--upstream",
        upstream,
        "--port",
        str(port),
        "--fault",
        "shift-hits",
        "--shift",
        str(shift),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with contextlib.suppress(OSError), opener.open(url + "/health", timeout=2):
                break
            time.sleep(0.1)
        yield url
    finally:
        kill_group_now(proc.pid)
        proc.wait()


def run_suite(suite: str, url: str, spec, info: dict, options: dict, concurrency: int) -> list[dict]:
    samples: list[dict] = []

    async def main():
        async with Client(url, ClientOptions(max_concurrency=concurrency)) as client:
            ctx = EvalContext(
                client,
                spec.id,
                info,
                options,
                spec.model_path,
                spec.tokenizer_path or spec.model_path,
                base_dir=str(REPO),
                on_sample=samples.append,
            )
            await SUITES[suite]()(ctx)

    asyncio.run(main())
    return [s for s in samples if s.get("shift") is not None]


def judge_sets(samples: list[dict], set_size: int, kl_max: float | None, test: ShiftTest, where: str) -> dict:
    sets = [samples[i : i + set_size] for i in range(0, len(samples) - set_size + 1, set_size)]
    kl = [sum(s["kl"] for s in chunk) / len(chunk) for chunk in sets]
    verdicts = [check_shift(where, "hit_shift", [s["shift"] for s in chunk], test) for chunk in sets]
    return {
        "sets": len(sets),
        "kl_div_per_set": kl,
        "kl_flagged": sum(k > kl_max for k in kl) if kl_max is not None else None,
        "hit_shift_per_set": [v.observed for v in verdicts],
        "hit_shift_p_per_set": [v.shift.p_value for v in verdicts],
        "shift_flagged": sum(not v.passed for v in verdicts),
        "example": verdicts[0].message() if verdicts else None,
        "units": [s["shift"] for s in samples],  # per prompt, in order: re-split offline at any set size
        "kl_per_sample": [s["kl"] for s in samples],
    }


def detectable_shift(units: list[float], set_size: int, alpha: float = 0.05, power: float = 0.8) -> float:
    mean = sum(units) / len(units)
    sd = math.sqrt(sum((u - mean) ** 2 for u in units) / (len(units) - 1))
    return (z_quantile(1 - alpha / 2) + z_quantile(power)) * sd / math.sqrt(set_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--configs", nargs="+", default=["canary/tp1"])
    parser.add_argument("--shifts", nargs="+", type=float, default=[0.0, 0.02, 0.05, 0.1])
    parser.add_argument("--samples", type=int, default=320)
    parser.add_argument("--set-size", type=int, default=16)
    parser.add_argument("--thresholds", default=str(REPO / "thresholds.yaml"))
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=ClientOptions().max_concurrency,
        help="requests in flight; fewer keeps a small pool from evicting turn 1 before turn 2",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="instead of one run of --samples prompts, R runs of --set-size prompts (each flushes the "
        "cache first: for servers whose cache cannot hold --samples conversations at once)",
    )
    parser.add_argument("--engine", default=None, help="override every config's engine (hf for a CPU dry run)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    thresholds = load_thresholds(args.thresholds)
    specs = {s.id: s for s in thresholds.server_specs()}
    for config_id in args.configs:
        spec = specs[config_id]
        engine = get_engine(args.engine or spec.engine)
        record = {
            "config": config_id,
            "samples": args.samples,
            "set_size": args.set_size,
            "max_concurrency": args.max_concurrency,
            "repeats": args.repeats,
            "suites": {},
        }
        started = time.monotonic()
        with Server(spec, engine, log_dir=args.out / "logs", gpu_ids=None) as server:
            record["server_startup_s"] = round(time.monotonic() - started, 1)
            for suite in args.suites:
                per_run = args.set_size if args.repeats else args.samples
                options = {**thresholds.suite_options(spec.model, spec.config, suite), "num_samples": per_run}
                kl = thresholds.find_reference(suite, spec.model, spec.config, "kl_div")
                kl_max = kl.entry.max if kl is not None else None
                entry = thresholds.find_reference(suite, spec.model, spec.config, "hit_shift")
                test = criterion_of(entry.entry) if entry is not None else ShiftTest(alpha=0.01, min_effect=0.005)
                rows = record["suites"][suite] = {"test": {"alpha": test.alpha, "min_effect": test.min_effect}}
                for shift in args.shifts:
                    with shifting_proxy(server.base_url, shift) as url:
                        samples = []
                        for _ in range(args.repeats or 1):
                            samples += run_suite(suite, url, spec, server.info, options, args.max_concurrency)
                    rows[str(shift)] = judge_sets(samples, args.set_size, kl_max, test, f"{suite}[{config_id}]")
                    if shift == 0.0:
                        rows["detectable_at_alpha_0.05_power_0.8"] = detectable_shift(
                            [s["shift"] for s in samples], args.set_size
                        )
                    r = rows[str(shift)]
                    print(
                        f"{config_id} {suite} shift={shift}: {r['sets']} sets, kl flagged {r['kl_flagged']}, "
                        f"hit_shift flagged {r['shift_flagged']}",
                        flush=True,
                    )
                    (args.out / f"{spec.slug}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
