"""Serving performance measured as SGLang's `bench_serving` measures it (sglang/benchmark/serving.py, 0.5.17).

One request = one native streaming `/generate` (`input_ids`, `max_new_tokens`, `ignore_eos`), or for image
workloads one OpenAI chat stream (`stream_chat_one`, bench_serving's openai-chat rules). Per request, as
`async_request_sglang_generate` does: a chunk counts when it carries text; the first one's arrival is TTFT;
each later one adds `gap / new_tokens` once per token it brought (`meta_info.completion_tokens` grows by more
than one per chunk under speculative decoding or stream_interval > 1), so ITL is pooled per token; E2E latency
is the arrival of the last chunk. Over a run (`calculate_metrics`): TPOT per request = (E2E − TTFT) /
(output_len − 1); request throughput = completed / duration; input and output throughput = tokens / duration;
concurrency = Σ E2E / duration. Medians, means, p90 and p99 (numpy's linear percentiles) of TTFT, ITL, TPOT, E2E.

Where this differs, on purpose: arrival is stamped when the chunk's bytes are read, before any JSON parsing
(bench_serving stamps after its strip and decode); a request with the wrong number of output tokens, or none,
counts as failed (bench_serving counts it as completed); and the client measures itself (`ClientLoad`): its CPU
seconds per wall second and the event loop's worst lag, so a saturated client is an error, not a perf verdict.
Kept beside bench_serving's TTFT (first text): the first chunk with a token, text or not (`first_token`), and how
many tokens came before any text (`tokens_before_text`). SGLang streams a chunk per token with the cumulative
text, which stays empty while the output decodes to nothing (held-back bytes, skipped special tokens); on the H200
(2026-12-04, dummy weights) 4 of 192 requests showed no text until their last chunk, TTFT = E2E ≈ 470 ms in both
tools, which is what moved p99 TTFT 14-83 % between runs.
"""

from __future__ import annotations

import asyncio
import math
import random
import resource
import time
from dataclasses import dataclass, field

import orjson

from harness.client import sse

PERCENTILES = (50, 90, 99)
# SGLang's FastAPI reads a body as JSON only under this header (without it: HTTP 400, "Input should be a
# dictionary or an instance of GenerateReqInput", seen on the H200 2026-12-02); the HF engine did not check it.
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class RequestTiming:
    """One streamed request: when its chunks came, how many tokens each brought, and whether it succeeded."""

    prompt_len: int
    expected_output: int
    start: float = 0.0
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    output_len: int = 0
    accept_length: float | None = None
    first_token: float = 0.0
    tokens_before_text: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def _stream_events(session, url: str, payload: dict, timing: RequestTiming, timeout_s: float, on_event) -> None:
    """POST `payload`, call `on_event(data, arrived)` for every SSE `data:` event but [DONE] (`arrived` stamped
    when its bytes were read, before any parsing), set `timing.latency` to the last chunk of any kind ([DONE]
    included, as bench_serving), and record a failure in `timing.error` instead of raising."""
    import aiohttp

    timing.start = start = last_chunk = time.perf_counter()
    try:
        async with session.post(
            url, data=orjson.dumps(payload), headers=JSON_HEADERS, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            if resp.status != 200:
                timing.error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                return
            async for event in sse.events(resp.content):
                last_chunk = event.arrived
                if event.data is not None:
                    on_event(event.data, event.arrived)
        timing.latency = last_chunk - start
    except (asyncio.TimeoutError, TimeoutError):
        timing.error = f"no complete answer within {timeout_s:g} s (a stalled stream)"
    except Exception as exc:
        timing.error = f"{type(exc).__name__}: {exc}"[:300]


def _check_count(timing: RequestTiming) -> None:
    if timing.error is None and timing.output_len == 0 and timing.tokens_before_text:
        timing.error = (
            f"{timing.tokens_before_text} output tokens streamed and no text: no TTFT (bench_serving's, "
            "to the first text)"
        )
    elif timing.error is None and timing.output_len != timing.expected_output:
        timing.error = f"{timing.output_len} output tokens streamed, {timing.expected_output} asked for (ignore_eos)"


async def stream_one(session, url: str, payload: dict, timing: RequestTiming, timeout_s: float) -> RequestTiming:
    """POST `payload` to a native streaming `/generate` and fill `timing` (errors are recorded, not raised)."""
    state = {"time": 0.0, "len": 0}

    def on_event(data: dict, arrived: float) -> None:
        meta = data.get("meta_info") or {}
        if not timing.prompt_len and meta.get("prompt_tokens"):  # a text prompt: the server's own count
            timing.prompt_len = int(meta["prompt_tokens"])
        if meta.get("spec_accept_length") is not None:
            timing.accept_length = float(meta["spec_accept_length"])
        tokens = int(meta.get("completion_tokens") or (state["len"] + 1 if data.get("text") else 0))
        if tokens and not timing.first_token:
            timing.first_token = arrived - timing.start
        if not data.get("text"):
            if state["len"] == 0:  # TTFT waits for text (bench_serving's); how long it waited, in tokens
                timing.tokens_before_text = max(timing.tokens_before_text, tokens)
            return
        last = state["len"]
        if last == 0:
            timing.ttft = arrived - timing.start
        elif tokens > last:
            timing.itl.extend([(arrived - state["time"]) / (tokens - last)] * (tokens - last))
        else:
            return
        state.update(time=arrived, len=tokens)

    await _stream_events(session, url, payload, timing, timeout_s, on_event)
    timing.output_len = state["len"]
    _check_count(timing)
    return timing


async def stream_chat_one(session, url: str, payload: dict, timing: RequestTiming, timeout_s: float) -> RequestTiming:
    """POST an OpenAI chat request (`stream`, `stream_options.include_usage`) and fill `timing`, as bench_serving's
    `async_request_openai_chat_completions`: a chunk counts when its delta has content; the first is TTFT, each
    later one adds its gap to ITL once (an OpenAI chunk carries no token count, so ITL here is per chunk); the
    output and prompt token counts come from the usage chunk (image tokens included), whose absence is an error."""
    state = {"time": 0.0, "chunks": 0, "usage": None}

    def on_event(data: dict, arrived: float) -> None:
        state["usage"] = data.get("usage") or state["usage"]
        choices = data.get("choices") or [{}]
        if not (choices[0].get("delta") or {}).get("content"):
            return
        if state["chunks"] == 0:
            timing.ttft = timing.first_token = arrived - timing.start  # a chat chunk carries no token count
        else:
            timing.itl.append(arrived - state["time"])
        state.update(time=arrived, chunks=state["chunks"] + 1)

    await _stream_events(session, url, payload, timing, timeout_s, on_event)
    if timing.error is None and not state["usage"]:
        timing.error = "the stream ended without a usage chunk (stream_options.include_usage)"
    elif state["usage"]:
        timing.output_len, timing.prompt_len = (
            int(state["usage"]["completion_tokens"]),
            int(state["usage"]["prompt_tokens"]),
        )
    _check_count(timing)
    return timing


@dataclass
class ClientLoad:
    """The client's own load during a run: CPU seconds per wall second, and the event loop's lag (how late a 5 ms
    timer fired), its 99th percentile and its worst."""

    cpu_per_wall: float
    p99_loop_lag_ms: float
    max_loop_lag_ms: float

    def saturated(self, cpu_budget: float, lag_budget_ms: float) -> str | None:
        """Why the client, not the server, may have set the pace. The lag budget is on the 99th percentile: one
        late timer (a garbage collection, 200 connections opening at once: 378 ms once on the H200) does not
        make a run client-bound, a loop that is late throughout does."""
        if self.cpu_per_wall > cpu_budget:
            return f"the client used {self.cpu_per_wall:.2f} CPU s per wall s (budget {cpu_budget:g})"
        if self.p99_loop_lag_ms > lag_budget_ms:
            return (
                f"the client's event loop lagged {self.p99_loop_lag_ms:.1f} ms at the 99th percentile (budget "
                f"{lag_budget_ms:g} ms; worst {self.max_loop_lag_ms:.1f} ms)"
            )
        return None


async def run_requests(
    session,
    url: str,
    payloads: list[dict],
    timings: list[RequestTiming],
    *,
    request_rate: float,
    max_concurrency: int | None,
    seed: int,
    timeout_s: float,
) -> tuple[float, ClientLoad]:
    """Send every payload (Poisson arrivals at `request_rate`/s, or all at once when inf; at most `max_concurrency`
    in flight); returns the run's duration (first send to last answer) and the client's load. A URL ending in
    /chat/completions is timed as an OpenAI chat stream (`stream_chat_one`), any other as native /generate."""
    stream = stream_chat_one if url.endswith("/chat/completions") else stream_one
    rng = random.Random(seed)
    limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    lags, stop = [0.0], asyncio.Event()

    async def watch_loop():
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(max(0.0, time.perf_counter() - before - 0.005))

    async def one(payload, timing):
        if limit is None:
            return await stream(session, url, payload, timing, timeout_s)
        async with limit:
            return await stream(session, url, payload, timing, timeout_s)

    watcher = asyncio.ensure_future(watch_loop())
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    tasks = []
    for payload, timing in zip(payloads, timings):
        tasks.append(asyncio.ensure_future(one(payload, timing)))
        if not math.isinf(request_rate):
            await asyncio.sleep(rng.expovariate(request_rate))
    await asyncio.gather(*tasks)
    duration = time.perf_counter() - wall0
    stop.set()
    await watcher
    lags.sort()
    p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
    return duration, ClientLoad((_cpu_seconds() - cpu0) / max(duration, 1e-9), p99 * 1000, lags[-1] * 1000)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summarize(timings: list[RequestTiming], duration: float) -> dict[str, float]:
    """bench_serving's metrics over the requests that succeeded (ms for latencies)."""
    import numpy as np

    done = [t for t in timings if t.ok]
    out: dict[str, float] = {"completed": len(done), "failed": len(timings) - len(done), "duration_s": duration}
    if not done:
        return out
    series = {
        "ttft_ms": [t.ttft * 1000 for t in done],
        "itl_ms": [x * 1000 for t in done for x in t.itl],
        "tpot_ms": [(t.latency - t.ttft) * 1000 / (t.output_len - 1) for t in done if t.output_len > 1],
        "e2e_latency_ms": [t.latency * 1000 for t in done],
        "first_token_ms": [(t.first_token or t.ttft) * 1000 for t in done],
    }
    for name, values in series.items():
        values = values or [0.0]
        out[f"mean_{name}"] = float(np.mean(values))
        for p in PERCENTILES:
            out[f"{'median' if p == 50 else f'p{p}'}_{name}"] = float(np.percentile(values, p))
    out["request_throughput"] = len(done) / duration
    out["input_throughput"] = sum(t.prompt_len for t in done) / duration
    out["output_throughput"] = sum(t.output_len for t in done) / duration
    out["concurrency"] = sum(t.latency for t in done) / duration
    out["text_late_requests"] = sum(t.tokens_before_text > 0 for t in done)
    out["max_tokens_before_text"] = max(t.tokens_before_text for t in done)
    accepts = [t.accept_length for t in done if t.accept_length is not None]
    if accepts:
        out["accept_length"] = float(np.mean(accepts))
    return out


def late_text(summaries: list[dict]) -> str | None:
    """What a shape's repeats say about requests whose text came after their first tokens, or None if none did."""
    late = sum(s.get("text_late_requests", 0) for s in summaries)
    if not late:
        return None
    first = [s["p99_first_token_ms"] for s in summaries]
    return (
        f"{late} of {sum(s['completed'] for s in summaries)} requests streamed up to "
        f"{max(s['max_tokens_before_text'] for s in summaries)} tokens before any text: their TTFT (bench_serving's, "
        "to the first text) includes that decode; to the first token, text or not: "
        f"p99 {min(first):.4g}..{max(first):.4g} ms"
    )


def by_request(timings: list[RequestTiming]) -> dict[str, list[float]]:
    """Each request's TTFT and E2E latency and its send time from the run's first (ms, in the order the requests
    were given), so two tools' runs of the same requests pair up request by request, and at one request in flight
    the gap between one answer and the next send can be read off."""
    first = min((t.start for t in timings), default=0.0)
    return {
        "start_ms": [round((t.start - first) * 1000, 3) for t in timings],
        "ttft_ms": [round(t.ttft * 1000, 3) if t.ok else None for t in timings],
        "first_token_ms": [round((t.first_token or t.ttft) * 1000, 3) if t.ok else None for t in timings],
        "e2e_ms": [round(t.latency * 1000, 3) if t.ok else None for t in timings],
    }
