"""Benchmark the HF reference engine on the tiny model: start-up time, request throughput, prefix-cache effect.

    python bench/bench_hf_engine.py [--model-path DIR] [--requests 200] [--concurrency 8] [--max-new-tokens 16]

Without --model-path the tiny random Qwen2 is built into a temporary directory first (not timed). The
engine runs through `harness.serve.server.Server` (its own process group, killed and reaped at the end). Printed:
- startup: spawn -> first `/health_generate` 200 (imports, weight load, first forward);
- throughput: `--requests` short `/generate` requests (16-24 prompt ids, `--max-new-tokens` out, greedy,
  ignore_eos) from `--concurrency` concurrent clients, after a flush so only page-sized prompt overlaps hit;
- prefix cache: latency of a 1024-id prompt cold (after a flush) and warm (repeat), median of a few.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]


async def post_generate(session, url: str, body: dict) -> dict:
    async with session.post(url + "/generate", json=body) as resp:
        payload = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"/generate answered {resp.status}: {payload}")
        return payload


async def throughput(session, url: str, args) -> dict:
    rng = random.Random(0)
    bodies = [
        {
            "input_ids": [rng.randrange(10, 390) for _ in range(rng.randint(16, 24))],
            "sampling_params": {"max_new_tokens": args.max_new_tokens, "temperature": 0, "ignore_eos": True},
        }
        for _ in range(args.requests)
    ]
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []

    async def client():
        while not queue.empty():
            body = queue.get_nowait()
            tic = time.perf_counter()
            await post_generate(session, url, body)
            latencies.append(time.perf_counter() - tic)

    async with session.post(url + "/flush_cache") as resp:
        resp.raise_for_status()
    tic = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.concurrency)))
    wall = time.perf_counter() - tic
    latencies.sort()
    return {
        "wall_s": wall,
        "req_per_s": args.requests / wall,
        "out_tok_per_s": args.requests * args.max_new_tokens / wall,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95) - 1],
    }


async def prefix_cache_effect(session, url: str, repeats: int = 5) -> dict:
    rng = random.Random(1)
    body = {"input_ids": [rng.randrange(10, 390) for _ in range(1024)], "sampling_params": {"max_new_tokens": 1}}
    cold, warm, cached = [], [], 0
    for _ in range(repeats):
        async with session.post(url + "/flush_cache") as resp:
            resp.raise_for_status()
        tic = time.perf_counter()
        await post_generate(session, url, body)
        cold.append(time.perf_counter() - tic)
        tic = time.perf_counter()
        cached = (await post_generate(session, url, body))["meta_info"]["cached_tokens"]
        warm.append(time.perf_counter() - tic)
    return {"cold_ms": 1000 * statistics.median(cold), "warm_ms": 1000 * statistics.median(warm), "cached": cached}


async def measure(url: str, args) -> tuple[dict, dict]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        return await throughput(session, url, args), await prefix_cache_effect(session, url)


def run(args, model_path: Path, log_dir: Path) -> None:
    """The engine through the harness's `Server` lifecycle: its own process group, killed and reaped on exit."""
    from harness.config.spec import ServerSpec
    from harness.serve.server import LifecycleOptions, Server

    spec = ServerSpec(
        model=model_path.name,
        config=f"page{args.page_size}",
        model_path=str(model_path),
        engine="hf",
        args=("--page-size", str(args.page_size)),
    )
    with Server(spec, log_dir=log_dir, options=LifecycleOptions(poll_interval=0.05)) as server:
        startup = server.startup_s
        tput, cache = asyncio.run(measure(server.base_url, args))
    rows = [
        ("startup (spawn -> /health_generate 200)", f"{startup:.2f} s"),
        (
            f"throughput ({args.requests} req, conc {args.concurrency}, {args.max_new_tokens} out)",
            f"{tput['req_per_s']:.1f} req/s, {tput['out_tok_per_s']:.0f} out tok/s",
        ),
        ("request latency p50 / p95", f"{tput['p50_ms']:.0f} / {tput['p95_ms']:.0f} ms"),
        (
            f"1024-id prefill cold / warm (cached {cache['cached']})",
            f"{cache['cold_ms']:.1f} / {cache['warm_ms']:.1f} ms",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"HF reference engine, {model_path.name}, page size {args.page_size}, cpu_count {os.cpu_count()}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-path", type=Path, default=None, help="default: build the tiny random Qwen2")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--page-size", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="bench_hf_engine_") as tmp:
        model_path = args.model_path
        if model_path is None:
            from canary.tiny import build_tiny_model

            model_path = build_tiny_model(Path(tmp) / "tiny_qwen2")
        run(args, model_path, Path(tmp) / "logs")


if __name__ == "__main__":
    main()
