"""Serving performance: throughput under saturation, latency under light load, as SGLang's bench_serving measures.

Dataset: none; prompts are seeded random token ids of the model's vocabulary (harness.evals.perf.workload), each
repeat its own (seed + repeat) and the same in every run; the prefix cache is flushed before each repeat. Source of
the definitions: SGLang 0.5.17 `sglang/benchmark/serving.py`
(`async_request_sglang_generate`, `calculate_metrics`); harness.evals.perf.measure says where this differs.
Workloads are data (`workloads:` option, one mapping per shape): input/output length, range ratio, number of
prompts, request rate (Poisson, or inf) or max concurrency, warm-up requests, the prompt source (`dataset:` random
token ids, or `sharegpt` with a local `dataset_path`), and which metrics the shape gates (`gate:`). Defaults:
`saturating` (every request at once; gates output tokens/s) and `light` (one request at a
time; gates median TTFT and ITL). Each shape runs `repeats` times after its warm-up; the gated value is the
median over repeats, the spread (min, max) is reported.
Correct before fast: a request that fails, stalls or streams a different number of tokens than asked
(`ignore_eos`) makes the suite an error before any timing is judged, and so does a client that was itself the
bottleneck (CPU per wall second or event-loop lag over budget).
Metrics: `output_throughput` (tokens/s, higher is better), `ttft_ms`, `itl_ms` (lower is better). References
are keyed by GPU (`match: {gpu: H200}`) and are ratios of a measured value (`min_ratio` / `max_ratio`); on a GPU
with no entry the run is recorded, not judged. With `bench_serving: true` the same shapes also run through
`python -m sglang.bench_serving` against the same server, one of its runs beside each of the harness's repeats
(before it in every other one), side by side in details and notes: medians, paired differences, and a 5 % judgement
only where both tools held still between their own runs (harness.evals.perf.side_by_side).
`bench_serving_prompts`: `same` (default: bench_serving sends the harness's requests of that repeat, so both time
the same work) or `own` (its `random-ids` dataset, whose prompts repeat on a small vocabulary). `connections`:
`keep_alive` (default) or `per_request` (a new connection for every request, as bench_serving opens them); a
workload's own `connections:` overrides it, so one server can run a shape both ways.
`dataset: images` shapes (VLMs) stream OpenAI chat completions with seeded noise images instead, timed by
bench_serving's openai-chat rules (harness.evals.perf.measure.stream_chat_one: ITL per chunk, token counts from usage).
Assumes: native `/generate` streaming with `meta_info.completion_tokens` in every chunk (SGLang, the HF engine);
for image shapes, `/v1/chat/completions` with `ignore_eos` and `stream_options.include_usage`.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.client.http import open_session
from harness.errors import HarnessError
from harness.evals.perf.bench_serving import Driver, beside, dataset_row
from harness.evals.perf.measure import RequestTiming, by_request, late_text, run_requests, summarize
from harness.evals.perf.spread import processes_for
from harness.evals.perf.workload import (
    CONNECTIONS,
    Workload,
    build_requests,
    chat_payload,
    image_requests,
    payload,
    prompt_ids,
    sharegpt_requests,
)
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "serving_perf"
# gated metric -> the bench_serving summary field it is
GATE_METRICS = {"output_throughput": "output_throughput", "ttft_ms": "median_ttft_ms", "itl_ms": "median_itl_ms"}
DEFAULT_WORKLOADS = {
    "saturating": {
        "input_len": 256,
        "output_len": 128,
        "num_prompts": 200,
        "request_rate": "inf",
        "gate": ["output_throughput"],
    },
    "light": {
        "input_len": 256,
        "output_len": 64,
        "num_prompts": 16,
        "max_concurrency": 1,
        "gate": ["ttft_ms", "itl_ms"],
    },
}
OPTIONS = {
    "workloads": DEFAULT_WORKLOADS,
    "repeats": 3,
    "seed": 0,
    "request_timeout_s": 120.0,
    "client_cpu_budget": 0.9,  # CPU seconds per wall second of a client process (one event loop each)
    "client_lag_budget_ms": 100.0,
    "bench_serving": False,
    "flush_cache": True,  # POST /flush_cache before every measured repeat, of either tool
    "settle_s": 1.0,  # wait after the flush before a repeat's first request, as bench_serving does
    "client_processes": "auto",  # harness.evals.perf.spread: one client process per 256 concurrent streams, or a count
    # keep_alive (what a serving client does) or per_request (as bench_serving: a session per request)
    "connections": "keep_alive",
    # same: bench_serving sends the harness's requests; own: its random-ids (harness.evals.perf.bench_serving says
    # why not)
    "bench_serving_prompts": "same",
}
BENCH_SERVING_PROMPTS = ("same", "own")


class PerfRunInvalid(HarnessError):
    """The run cannot be judged: requests failed or came back wrong, or the client was the bottleneck."""


def gated(workloads: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Workload -> the metrics it gates; each metric gated by at most one workload."""
    out, seen = {}, {}
    for name, raw in workloads.items():
        gates = list(raw.get("gate", []))
        for metric in gates:
            if metric not in GATE_METRICS:
                from harness.errors import unknown_choice

                raise unknown_choice("gated metric", metric, GATE_METRICS, where=f"{SUITE}.workloads.{name}.gate")
            if metric in seen:
                from harness.errors import ConfigError

                raise ConfigError(f"{SUITE}.workloads: {metric} is gated by both {seen[metric]} and {name}")
            seen[metric] = name
        out[name] = gates
    return out


def verify(timings: list[RequestTiming], where: str) -> None:
    failed = [t for t in timings if not t.ok]
    if failed:
        raise PerfRunInvalid(
            f"{where}: {len(failed)} of {len(timings)} requests failed, so no timing is judged; "
            f"first: {failed[0].error}"
        )


class ServingPerf:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        if opts["connections"] not in CONNECTIONS:
            from harness.errors import unknown_choice

            raise unknown_choice("connections", opts["connections"], CONNECTIONS, where=f"{SUITE}.connections")
        if opts["bench_serving_prompts"] not in BENCH_SERVING_PROMPTS:
            from harness.errors import unknown_choice

            raise unknown_choice(
                "bench_serving_prompts",
                opts["bench_serving_prompts"],
                BENCH_SERVING_PROMPTS,
                where=f"{SUITE}.bench_serving_prompts",
            )
        if opts["bench_serving"] and opts["bench_serving_prompts"] == "same" and not opts["flush_cache"]:
            from harness.errors import ConfigError

            raise ConfigError(
                f"{SUITE}: bench_serving_prompts: same needs flush_cache: true (without a flush the "
                "second tool of a repeat finds the first one's prompts in the prefix cache)"
            )
        gates = gated(opts["workloads"])
        workloads = [
            Workload.from_options(name, {k: v for k, v in raw.items() if k != "gate"}, f"{SUITE}.workloads")
            for name, raw in opts["workloads"].items()
        ]
        tokenizer, ids = prompt_ids(ctx.tokenizer_path or ctx.model_path, ctx.model_path)
        repeats = 1 if ctx.smoke else opts["repeats"]
        driver = Driver()
        try:
            return await self._measure(ctx, opts, gates, workloads, tokenizer, ids, repeats, driver)
        finally:
            driver.close()

    async def _measure(self, ctx, opts, gates, workloads, tokenizer, ids, repeats, driver) -> EvalResult:
        metrics, runs = {}, 0
        details = {
            "prompt_token_choices": len(ids),
            "repeats": repeats,
            "connections": opts["connections"],
            "bench_serving_prompts": opts["bench_serving_prompts"],
            "workloads": {},
        }
        for workload in workloads:
            where = f"{SUITE}[{ctx.case_id}] {workload.name}"

            def requests_of(seed: int, workload=workload) -> list:
                if workload.dataset == "sharegpt":
                    built = sharegpt_requests(workload, tokenizer, Path(ctx.base_dir, workload.dataset_path), seed)
                elif workload.dataset == "images":
                    built = image_requests(workload, tokenizer, ids, seed)
                else:
                    built = build_requests(workload, ids, seed)
                return built[: workload.warmup + ctx.limit] if ctx.limit else built

            url = ctx.client.base_url + ("/v1/chat/completions" if workload.dataset == "images" else "/generate")
            connections = workload.connections or opts["connections"]

            warm, _, _ = await _send(
                url, requests_of(opts["seed"])[: workload.warmup], float("inf"), 1, 0, opts["request_timeout_s"]
            )
            verify(warm, where + " warm-up")
            summaries, theirs = [], []
            compare = opts["bench_serving"] and workload.dataset != "images"  # its `image` dataset is not wired in
            for repeat in range(repeats):
                # bench_serving goes first in every other repeat: the server's speed drifts between runs (two
                # speeds under light load on the H200, 2026-12-02), and a fixed order would give one tool the
                # later state every time.
                same = (
                    [dataset_row(p, n, tokenizer) for p, n in requests_of(opts["seed"] + repeat)[workload.warmup :]]
                    if compare and opts["bench_serving_prompts"] == "same"
                    else None
                )
                if compare and repeat % 2 == 1:
                    theirs.append(await beside(ctx, workload, opts["seed"] + repeat, opts["flush_cache"], driver, same))
                # Each repeat its own prompts (seed + repeat, as bench_serving's --seed) on a flushed prefix cache
                # (bench_serving's --flush-cache): the same prompts again would be served from the radix cache, and
                # repeats 2 and 3 would then measure a cache hit's TTFT, not a prefill's.
                requests = requests_of(opts["seed"] + repeat)
                if opts["flush_cache"]:
                    await ctx.client.flush_cache()
                    # bench_serving sleeps 1 s after its flush before the first request; without it, the H200's
                    # saturating streams stalled up to 0.5 s (p99 ITL 520 ms, TPOT 2x bench_serving's, 2026-12-02)
                    await asyncio.sleep(opts["settle_s"])
                measured = requests[workload.warmup :]
                processes = processes_for(len(measured), workload.max_concurrency, opts["client_processes"])
                timings, duration, load = await _send(
                    url,
                    measured,
                    workload.request_rate,
                    workload.max_concurrency,
                    opts["seed"] + repeat,
                    opts["request_timeout_s"],
                    processes,
                    fresh_connections=connections == "per_request",
                )
                verify(timings, f"{where} repeat {repeat + 1}")
                saturated = load.saturated(opts["client_cpu_budget"], opts["client_lag_budget_ms"])
                if saturated:
                    raise PerfRunInvalid(
                        f"{where} repeat {repeat + 1}: client-saturated: {saturated}; the numbers "
                        "would measure the client, not the server"
                    )
                summary = summarize(timings, duration)
                summary.update(
                    client_cpu_per_wall=load.cpu_per_wall,
                    client_p99_loop_lag_ms=load.p99_loop_lag_ms,
                    client_max_loop_lag_ms=load.max_loop_lag_ms,
                    client_processes=processes,
                )
                summaries.append(summary)
                runs += len(timings)
                ctx.on_sample(
                    {
                        "workload": workload.name,
                        "repeat": repeat + 1,
                        "connections": connections,
                        **summary,
                        "by_request": by_request(timings),
                    }
                )
                if compare and repeat % 2 == 0:
                    theirs.append(await beside(ctx, workload, opts["seed"] + repeat, opts["flush_cache"], driver, same))
                if compare:
                    ctx.on_sample(
                        {
                            "workload": workload.name,
                            "repeat": repeat + 1,
                            "tool": "bench_serving",
                            "order": "after" if repeat % 2 == 0 else "before",
                            **theirs[-1],
                        }
                    )
            for metric in gates[workload.name]:
                metrics[metric] = statistics.median(s[GATE_METRICS[metric]] for s in summaries)
            details["workloads"][workload.name] = {
                "workload": workload.record(),
                "gates": gates[workload.name],
                "repeats": summaries,
                "spread": _spread(summaries),
            }
            if theirs:
                from harness.evals.perf.side_by_side import side_by_side

                details["workloads"][workload.name]["bench_serving"] = side_by_side(workload.name, summaries, theirs)
        return EvalResult(SUITE, metrics, runs, details, notes=_notes(details, ctx.case_id))


async def _send(
    url: str,
    requests: list,
    rate: float,
    concurrency: int | None,
    seed: int,
    timeout_s: float,
    processes: int = 1,
    *,
    fresh_connections: bool = False,
):
    """Stream `requests` ((input_ids, output_len) pairs) in a session of their own: unbounded, since the shared
    client caps in-flight requests at --harness-concurrency (which would cap the saturating load), and fresh, since
    keep-alive connections left idle between repeats are closed by the server (uvicorn after 5 s), which a reused
    one then reports as ServerDisconnectedError (seen on the H200). `fresh_connections`: no keep-alive, one
    connection per request (`connections: per_request`)."""

    chat = url.endswith("/chat/completions")  # prompts are chat messages (images), lengths come from usage
    # a text or chat prompt's length comes back from the server (meta_info.prompt_tokens, usage.prompt_tokens)
    timings = [RequestTiming(len(prompt) if isinstance(prompt, list) and not chat else 0, n) for prompt, n in requests]
    payloads = [chat_payload(prompt, n) if chat else payload(prompt, n) for prompt, n in requests]
    if processes > 1:  # harness.evals.perf.spread: past a few hundred streams, one event loop per share of them
        from harness.evals.perf.spread import send_spread

        duration, load = await asyncio.to_thread(
            send_spread,
            url,
            payloads,
            timings,
            processes=processes,
            request_rate=rate,
            max_concurrency=concurrency,
            seed=seed,
            timeout_s=timeout_s,
            fresh_connections=fresh_connections,
        )
        return timings, duration, load
    async with open_session(0, fresh_connections=fresh_connections) as session:
        duration, load = await run_requests(
            session,
            url,
            payloads,
            timings,
            request_rate=rate,
            max_concurrency=concurrency,
            seed=seed,
            timeout_s=timeout_s,
        )
    return timings, duration, load


def _spread(summaries: list[dict]) -> dict[str, list[float]]:
    keys = ("output_throughput", "median_ttft_ms", "median_itl_ms", "median_tpot_ms", "median_e2e_latency_ms")
    return {
        k: [min(s[k] for s in summaries), max(s[k] for s in summaries)] for k in keys if all(k in s for s in summaries)
    }


def _notes(details: dict, case_id: str) -> list[str]:
    lines = []
    for name, block in details["workloads"].items():
        spread = block["spread"]
        parts = [f"{k} {lo:.4g}..{hi:.4g}" for k, (lo, hi) in spread.items()]
        lines.append(f"{SUITE}[{case_id}] {name}: {len(block['repeats'])} repeat(s): " + ", ".join(parts))
        if late := late_text(block["repeats"]):
            lines.append(f"{SUITE}[{case_id}] {name}: {late}")
        if "bench_serving" in block:
            lines.append(f"{SUITE}[{case_id}] {block['bench_serving']['line']}")
    return lines
