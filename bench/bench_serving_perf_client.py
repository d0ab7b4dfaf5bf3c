"""serving_perf's measurement client against the known-timing server: error per metric, and the client's ceiling.

Part 1, accuracy: tests/servers/timed_stream_server.py with TTFT 50 ms and ITL 10 ms, 16 streams of 64 tokens;
each metric's relative error against the server's schedule (TTFT 50, ITL = TPOT 10, E2E 680 ms, output
throughput 16 * 64 / 0.68 s).
Part 2, ceiling: ITL 1 ms (1000 tokens/s per stream) and more and more concurrent streams of 256 tokens until
the client's own budget (`serving_perf` defaults: 0.9 CPU s per wall s, 100 ms event-loop lag) is exceeded or
the delivered rate stops growing; prints streamed tokens/s, client CPU per wall second and worst loop lag.
The server is a second Python process on the same 2 cores, so the ceiling found is a floor on the client's.

    python bench/bench_serving_perf_client.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from serving_perf_support import timed_server  # noqa: E402

from harness.evals.perf.measure import RequestTiming, run_requests, summarize  # noqa: E402
from harness.evals.perf.workload import payload  # noqa: E402


async def run(url: str, streams: int, tokens: int):
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for _ in range(2):  # warm the connections, then measure
            timings = [RequestTiming(8, tokens) for _ in range(streams)]
            duration, load = await run_requests(
                session,
                url + "/generate",
                [payload([1] * 8, tokens)] * streams,
                timings,
                request_rate=float("inf"),
                max_concurrency=None,
                seed=0,
                timeout_s=120,
            )
    return summarize(timings, duration), load


def main() -> None:
    with timed_server("--ttft-ms", "50", "--itl-ms", "10") as url:
        m, _ = asyncio.run(run(url, 16, 64))
    truth = {
        "median_ttft_ms": 50.0,
        "mean_ttft_ms": 50.0,
        "median_itl_ms": 10.0,
        "mean_itl_ms": 10.0,
        "median_tpot_ms": 10.0,
        "median_e2e_latency_ms": 680.0,
        "output_throughput": 16 * 64 / 0.68,
    }
    print("accuracy (16 streams x 64 tokens, TTFT 50 ms, ITL 10 ms)")
    print(f"{'metric':<24}{'truth':>10}{'measured':>12}{'error':>9}")
    for key, value in truth.items():
        print(f"{key:<24}{value:>10.2f}{m[key]:>12.2f}{(m[key] - value) / value:>+9.1%}")
    print("\nceiling (ITL 1 ms, 256 tokens per stream)")
    print(f"{'streams':>8}{'tokens/s':>12}{'cpu/wall':>10}{'p99 lag ms':>12}{'max lag ms':>12}{'failed':>8}")
    with timed_server("--ttft-ms", "5", "--itl-ms", "1") as url:
        for streams in (4, 8, 16, 32, 64, 128):
            m, load = asyncio.run(run(url, streams, 256))
            print(
                f"{streams:>8}{m['output_throughput']:>12.0f}{load.cpu_per_wall:>10.2f}{load.p99_loop_lag_ms:>12.1f}"
                f"{load.max_loop_lag_ms:>12.1f}{m['failed']:>8.0f}"
            )
            if load.saturated(0.9, 100.0):
                print(f"client budget exceeded at {streams} streams: {load.saturated(0.9, 100.0)}")
                break


if __name__ == "__main__":
    main()
