"""The streaming client spread over processes, for loads one event loop cannot time.

One asyncio loop streams about 60,000 tokens/s at half a core on the 2-core CI machine
(bench/bench_serving_perf_client.py); past a few hundred concurrent streams its own lag would start to show up
in TTFT and ITL. `send_spread` then gives each of N worker processes every N-th request (so each sees the same
mix of lengths), a Poisson rate of rate/N (N independent Poisson streams add up to one of the full rate) and its
share of the concurrency limit. The workers start together after a barrier, each with its own event loop and
session (keep-alive, or a connection per request), and time with `time.perf_counter()`, which on Linux is
CLOCK_MONOTONIC and shared by every process. So the merged run's duration is the last answer minus the first send
over all workers. The client's load is each worker's own: CPU per wall second and event-loop lag are judged on the
busiest worker.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
from dataclasses import asdict, dataclass

from harness.evals.perf.measure import ClientLoad, RequestTiming

STREAMS_PER_PROCESS = 256  # above this many requests at once, the one-loop client is no longer far below its ceiling
START_TIMEOUT_S = 60.0


def processes_for(requests: int, concurrency: int | None, setting: int | str) -> int:
    """`client_processes`: a count, or "auto" (one process per 256 concurrent streams, at most one per CPU)."""
    in_flight = min(requests, concurrency or requests)
    if setting == "auto":
        return max(1, min(os.cpu_count() or 1, math.ceil(in_flight / STREAMS_PER_PROCESS)))
    return max(1, min(int(setting), in_flight))


@dataclass(frozen=True)
class Share:
    """What one worker sends and how: its arrival rate, concurrency and seed, the request timeout, and whether
    each request gets a connection of its own (`connections: per_request`)."""

    request_rate: float
    max_concurrency: int | None
    seed: int
    timeout_s: float
    fresh_connections: bool = False


def send_spread(
    url: str,
    payloads: list[dict],
    timings: list[RequestTiming],
    *,
    processes: int,
    request_rate: float,
    max_concurrency: int | None,
    seed: int,
    timeout_s: float,
    fresh_connections: bool = False,
) -> tuple[float, ClientLoad]:
    """Like `measure.run_requests`, over `processes` workers; fills `timings` in place."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds an event loop and threads
    barrier, results = context.Barrier(processes + 1), context.Queue()
    shares = [list(range(k, len(payloads), processes)) for k in range(processes)]
    limits = _split(max_concurrency, processes)
    workers = [
        context.Process(
            target=_worker,
            daemon=True,
            name=f"perf-client-{k}",
            args=(
                k,
                url,
                [payloads[i] for i in share],
                [(timings[i].prompt_len, timings[i].expected_output) for i in share],
                Share(request_rate / processes, limits[k], seed * 1000 + k, timeout_s, fresh_connections),
                barrier,
                results,
            ),
        )
        for k, share in enumerate(shares)
    ]
    try:
        for worker in workers:
            worker.start()
        barrier.wait(timeout=START_TIMEOUT_S)
        answers = [results.get(timeout=timeout_s * len(payloads) + START_TIMEOUT_S) for _ in workers]
    except (queue.Empty, TimeoutError, RuntimeError) as exc:
        raise RuntimeError(
            f"the perf client's {processes} worker processes did not finish: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
                worker.join()
    failed = [a["error"] for a in answers if "error" in a]
    if failed:
        raise RuntimeError(f"a perf client worker failed: {failed[0]}")
    for answer in answers:
        for index, fields in zip(shares[answer["worker"]], answer["timings"]):
            vars(timings[index]).update(fields)
    first, last = min(a["started"] for a in answers), max(a["started"] + a["duration"] for a in answers)
    busiest = max((a["load"] for a in answers), key=lambda load: (load["cpu_per_wall"], load["p99_loop_lag_ms"]))
    return last - first, ClientLoad(
        busiest["cpu_per_wall"],
        max(a["load"]["p99_loop_lag_ms"] for a in answers),
        max(a["load"]["max_loop_lag_ms"] for a in answers),
    )


def _split(limit: int | None, parts: int) -> list[int | None]:
    if not limit:
        return [None] * parts
    return [limit // parts + (1 if k < limit % parts else 0) for k in range(parts)]


def _worker(k, url, payloads, shapes, how: Share, barrier, results) -> None:
    import asyncio
    import time

    from harness.client.http import open_session
    from harness.evals.perf.measure import run_requests

    timings = [RequestTiming(prompt_len, expected) for prompt_len, expected in shapes]

    async def go():
        async with open_session(0, fresh_connections=how.fresh_connections) as session:
            barrier.wait(timeout=START_TIMEOUT_S)
            started = time.perf_counter()
            duration, load = await run_requests(
                session,
                url,
                payloads,
                timings,
                request_rate=how.request_rate,
                max_concurrency=how.max_concurrency,
                seed=how.seed,
                timeout_s=how.timeout_s,
            )
            return started, duration, load

    try:
        started, duration, load = asyncio.run(go())
        results.put(
            {
                "worker": k,
                "started": started,
                "duration": duration,
                "load": asdict(load),
                "timings": [asdict(t) for t in timings],
            }
        )
    except Exception as exc:
        results.put({"worker": k, "error": f"worker {k}: {type(exc).__name__}: {exc}"})
