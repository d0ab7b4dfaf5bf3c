"""serving_perf's client-saturation check, asserted with an injected lag instead of the machine's load.

The product refuses to judge a run whose client set the pace: more CPU seconds per wall second than
`client_cpu_budget` (0.9) or an event loop late by more than `client_lag_budget_ms` (100 ms) at the 99th percentile
(harness/evals/perf/measure.py, `ClientLoad.saturated`). The other serving_perf tests run with a lag budget no
loaded machine reaches (tests/serving_perf_support.py says why); here the loop is made to lag on purpose: a task
that holds it 200 ms at a time (`time.sleep`, no CPU) runs beside the requests, so every 5 ms timer the watcher sets
fires at least 195 ms late, whatever else runs on the machine. The lag is measured, and judged at the product's
budget, in `run_requests` itself and in a real pytest run of the suite (the row is an error naming the repeat).
"""

from __future__ import annotations

import asyncio
import time

from inner_run_support import assert_clean, matches, run_inner
from serving_perf_support import LAG_BUDGET_MS, project, timed_server

from harness.evals.perf.measure import ClientLoad, RequestTiming, run_requests
from harness.evals.perf.workload import payload

HOLD_S = 0.2  # each hold of the event loop by the injected task
LAGGING_CONFTEST = f"""
import asyncio
import time

import harness.evals.serving_perf as suite

pytest_plugins = ["harness.pytest_plugin.hooks"]
real_run_requests = suite.run_requests


async def hold_the_loop():
    while True:
        time.sleep({HOLD_S})  # the injected lag: the client's event loop held, no CPU used
        await asyncio.sleep(0)


async def lagging_run_requests(*args, **kwargs):
    holder = asyncio.ensure_future(hold_the_loop())
    try:
        return await real_run_requests(*args, **kwargs)
    finally:
        holder.cancel()


suite.run_requests = lagging_run_requests
"""


async def hold_the_loop():
    while True:
        time.sleep(HOLD_S)
        await asyncio.sleep(0)


def test_the_budgets_name_cpu_first_then_the_loops_lag_and_pass_at_the_budget():
    assert ClientLoad(1.3, 150.0, 400.0).saturated(0.9, 100) == "the client used 1.30 CPU s per wall s (budget 0.9)"
    assert ClientLoad(0.5, 150.0, 400.0).saturated(0.9, 100) == (
        "the client's event loop lagged 150.0 ms at the 99th percentile (budget 100 ms; worst 400.0 ms)"
    )
    assert ClientLoad(0.9, 100.0, 400.0).saturated(0.9, 100) is None  # at the budget: not over it


def test_an_injected_lag_is_measured_and_over_the_products_budget():
    with timed_server("--ttft-ms", "2", "--itl-ms", "1") as url:

        async def go():
            import aiohttp

            async with aiohttp.ClientSession() as session:
                holder = asyncio.ensure_future(hold_the_loop())
                try:
                    timings = [RequestTiming(8, 16) for _ in range(4)]
                    return await run_requests(
                        session,
                        url + "/generate",
                        [payload([i] * 8, 16) for i in range(4)],
                        timings,
                        request_rate=float("inf"),
                        max_concurrency=None,
                        seed=0,
                        timeout_s=60,
                    )
                finally:
                    holder.cancel()

        _, load = asyncio.run(go())
    assert load.p99_loop_lag_ms >= HOLD_S * 1000 - 5 and load.max_loop_lag_ms >= load.p99_loop_lag_ms
    assert matches(
        "the client's event loop lagged * ms at the 99th percentile (budget 100 ms; worst * ms)",
        load.saturated(10.0, 100),
    )
    assert load.saturated(10.0, LAG_BUDGET_MS) is None  # the other tests' budget: the check passes, nothing else


def test_a_lagging_client_makes_the_suite_an_error_naming_the_repeat(tmp_path):
    """The product's budget (100 ms, the test project's line taken out) and the lag injected into the suite's own
    event loop: the first measured repeat is refused, before any timing is judged."""
    root = project(tmp_path)
    text = (root / "thresholds.yaml").read_text()
    (root / "thresholds.yaml").write_text(text.replace(f"        client_lag_budget_ms: {LAG_BUDGET_MS}\n", ""))
    (root / "conftest.py").write_text(LAGGING_CONFTEST)
    with timed_server("--ttft-ms", "2", "--itl-ms", "1") as url:
        run = run_inner(root, "--harness-base-url", url, "--harness-gpus", "")
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "error", run.output[-3000:]
    assert matches(
        "serving_perf[timed/cfg]: serving_perf[timed/cfg] saturating repeat 1: client-saturated: the client's "
        "event loop lagged * ms at the 99th percentile (budget 100 ms; worst * ms); the numbers would measure the "
        "client, not the server",
        row["error"],
    ), row["error"]
    assert "metrics" not in row or not row["metrics"]
    assert_clean(run)
