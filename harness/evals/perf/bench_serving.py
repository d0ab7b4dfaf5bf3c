"""The same workloads through SGLang's own `python -m sglang.bench_serving`, against the same server, in the same run.

Per workload and repeat, next to the harness's own repeat (after it in repeats 1, 3, ..., before it in 2, 4, ...,
so both tools see the server in nearly the same state and drift between runs favours neither). By default
(serving_perf's `bench_serving_prompts: same`) bench_serving sends the harness's own requests of that repeat, the
same ids or texts and output lengths (`run_once(requests=...)`, handed over by harness.evals.perf.bench_serving_driver),
so the two tools time the same work: its own `random-ids` draws cyclic runs of consecutive ids from random
offsets, and on a small vocabulary many prompts repeat (on the canary tokenizer's 485 ids, 31-35 % of a 512-prompt
run's prompt tokens were prefix-cache hits, against the harness's 0.1 %: 2026-12-03, h200-perf7g's server log).
With `own`, it draws its own: `--backend sglang --dataset-name random-ids --tokenize-prompt`
(random token ids sent as `input_ids`, so input lengths are exact, no dataset download) with the workload's
lengths (`--random-range-ratio`), or for a `sharegpt` workload `--dataset-name sharegpt` on the same file (the
same texts: random ids are not the same ids in both tools, bench_serving draws over the whole vocabulary,
special tokens included), prompt count, request rate, max concurrency, warm-up and `--flush-cache` (as the
harness flushes before each repeat), its JSONL result read
back (from a temporary directory) and kept in the suite's details and samples. Side by side (`side_by_side`), per
metric both report: each tool's median over repeats and spread, each repeat's paired difference (harness repeat k
against bench_serving run k) and their median, and each tool's own run-to-run change; a metric is judged on its
paired median against `tolerance` (5 %, the issue's bar), and only where neither tool moved more than that between
its own consecutive runs. The comparison goes to details and notes, not into a verdict (the two tools send at
different moments, and with `own` different requests; the harness run is the gated one). bench_serving runs in
one long-lived process per suite (`Driver`, harness.evals.perf.bench_serving_driver: sglang imported once, not per run),
in its own process group, killed and reaped at the end or when a run outlives `timeout_s`.
"""

from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.evals.perf.side_by_side import SHARED
from harness.serve import process_group


def command(
    base_url: str,
    tokenizer: str,
    workload,
    seed: int,
    output: Path,
    python: str = sys.executable,
    dataset_path: Path | None = None,
    flush_cache: bool = True,
) -> list[str]:
    """`random` workloads as `random-ids --tokenize-prompt`; `sharegpt` ones read the same file (`dataset_path`,
    resolved by the caller), their first turns sent as text, the output length fixed to the workload's."""
    rate = "inf" if math.isinf(workload.request_rate) else str(workload.request_rate)
    cmd = [python, "-m", "sglang.bench_serving", "--backend", "sglang", "--base-url", base_url]
    if workload.dataset == "sharegpt":
        cmd += [
            "--dataset-name",
            "sharegpt",
            "--dataset-path",
            str(dataset_path or workload.dataset_path),
            "--sharegpt-context-len",
            str(workload.input_len + workload.output_len),
        ]
        if workload.fixed_output:
            cmd += ["--sharegpt-output-len", str(workload.output_len)]
    else:
        cmd += [
            "--dataset-name",
            "random-ids",
            "--tokenize-prompt",
            "--random-input-len",
            str(workload.input_len),
            "--random-output-len",
            str(workload.output_len),
            "--random-range-ratio",
            str(workload.range_ratio),
        ]
    cmd += [
        "--num-prompts",
        str(workload.num_prompts),
        "--request-rate",
        rate,
        "--tokenizer",
        tokenizer,
        "--seed",
        str(seed),
        "--warmup-requests",
        str(workload.warmup),
        "--output-file",
        str(output),
        "--disable-tqdm",
        "--output-details",
    ]
    if workload.max_concurrency:
        cmd += ["--max-concurrency", str(workload.max_concurrency)]
    if flush_cache:
        cmd += ["--flush-cache"]
    return cmd


def run_once(
    base_url: str,
    tokenizer: str,
    workload,
    seed: int,
    output: Path,
    timeout_s: float = 300.0,
    python: str = sys.executable,
    env: dict | None = None,
    driver: Driver | None = None,
    requests: list[dict] | None = None,
    **how,
) -> dict:
    """One bench_serving run of `workload`: its summary fields, or `error` with the exit and output tail.
    With `driver`, the run goes through that long-lived bench_serving process instead of a fresh one. With
    `requests` (`{"prompt", "prompt_len", "output_len"}` each), it sends exactly those, through a driver (this
    one, or one started for the run): harness.evals.perf.bench_serving_driver hands them to bench_serving's run."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    cmd = command(base_url, tokenizer, workload, seed, output, python, **how)
    if requests is not None:
        sent = output.with_name(output.stem + ".requests.jsonl")
        sent.write_text("".join(json.dumps(r) + "\n" for r in requests), encoding="utf-8")
        own = driver is None
        driver = driver or Driver(python=python, env=env)
        try:
            ran = driver.run(cmd[3:], timeout_s, requests=sent)
        finally:
            if own:
                driver.close()
    else:
        ran = driver.run(cmd[3:], timeout_s) if driver is not None else _run(cmd, timeout_s, env)
    prompts = "same" if requests is not None else "own"
    if ran["returncode"] != 0 or not output.is_file():
        return {"command": cmd, "prompts": prompts, "error": f"exit {ran['returncode']}: {ran['tail'][-300:]}"}
    theirs = json.loads(output.read_text().splitlines()[-1])
    # --output-details: per request, in the order sent (its gather keeps task order), which with `same` is the
    # harness's order, so request k of both tools is one prompt (harness.evals.perf.measure.by_request)
    ttfts = [round(t * 1000, 3) for t in theirs.get("ttfts") or []]
    return {
        "command": cmd,
        "wall_s": ran["wall_s"],
        "prompts": prompts,
        **{k: theirs.get(k) for k in SHARED},
        **({"by_request": {"ttft_ms": ttfts}} if ttfts else {}),
    }


class Driver:
    """One `harness.evals.perf.bench_serving_driver` process (its own process group) that runs bench_serving once per
    call, so sglang is imported once per suite and not once per repeat. A run past its timeout kills the
    process; the next call starts a new one. `close()` kills and reaps it (also registered for interrupts)."""

    def __init__(self, python: str = sys.executable, env: dict | None = None):
        self.python, self.env, self.proc, self.lines = python, env, None, None

    def _start(self) -> None:
        from harness.evals.perf import bench_serving_driver

        self.proc = subprocess.Popen(
            [self.python, "-u", bench_serving_driver.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env,
        )
        process_group.register(self.proc.pid)
        self.lines = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc.stdout, self.lines), daemon=True).start()

    def run(self, argv: list[str], timeout_s: float, requests: Path | None = None) -> dict:
        """One bench_serving run of `argv`; with `requests` (a JSON-lines file), it sends exactly those."""
        from harness.evals.perf.bench_serving_driver import MARKER

        if self.proc is None or self.proc.poll() is not None:
            self._start()
        started, tail = time.monotonic(), []
        job = {"argv": argv, "requests": str(requests)} if requests is not None else argv
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.flush()
        while True:
            left = timeout_s - (time.monotonic() - started)
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                self.close()
                return {
                    "returncode": -9,
                    "tail": "".join(tail)[-2000:] + f"\n(timed out after {timeout_s:.0f} s)",
                    "wall_s": round(time.monotonic() - started, 1),
                }
            if line is None:  # the driver died
                code = self.proc.wait()
                self.close()
                return {
                    "returncode": code,
                    "tail": "".join(tail)[-2000:],
                    "wall_s": round(time.monotonic() - started, 1),
                }
            if line.startswith(MARKER):
                return {
                    "returncode": int(line.split()[-1]),
                    "tail": "".join(tail)[-2000:],
                    "wall_s": round(time.monotonic() - started, 1),
                }
            tail.append(line)
            del tail[:-200]

    def close(self) -> None:
        if self.proc is None:
            return
        process_group.kill_group_now(self.proc.pid)
        self.proc.wait()
        process_group.unregister(self.proc.pid)
        self.proc = None


def _pump(stream, lines: queue.Queue) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode(errors="replace"))
    lines.put(None)


async def beside(ctx, workload, seed: int, flush_cache: bool, driver, requests: list[dict] | None) -> dict:
    """One bench_serving run of `workload` beside a serving_perf repeat (`ctx`: its EvalContext), against the same
    server; with `requests`, it sends exactly those (the harness's)."""
    import asyncio
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as folder:
        dataset = Path(ctx.base_dir, workload.dataset_path) if workload.dataset_path else None
        return await asyncio.to_thread(
            run_once,
            ctx.client.base_url,
            ctx.tokenizer_path or ctx.model_path,
            workload,
            seed,
            Path(folder, f"{workload.name}.jsonl"),
            driver=driver,
            requests=requests,
            dataset_path=dataset,
            flush_cache=flush_cache,
        )


def dataset_row(prompt, output_len: int, tokenizer) -> dict:
    """One request as bench_serving's dataset row: token ids, or a text (sharegpt) and its token count as
    bench_serving's own sharegpt loader counts it (`tokenizer.encode`)."""
    length = len(prompt) if isinstance(prompt, list) else len(tokenizer.encode(prompt))
    return {"prompt": prompt, "prompt_len": length, "output_len": output_len}


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
    return {
        "returncode": proc.returncode,
        "tail": output.decode(errors="replace")[-2000:],
        "wall_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.evals.perf.bench_serving SAMPLES.jsonl ...`: each run's side-by-side lines, today's rule."""
    import argparse

    from harness.evals.perf.side_by_side import rejudge

    parser = argparse.ArgumentParser(
        prog="python -m harness.evals.perf.bench_serving",
        description="Judge again the harness-vs-bench_serving comparison of finished serving_perf runs.",
    )
    parser.add_argument(
        "samples", nargs="+", help="a run's samples/serving_perf__<model>__<config>.jsonl (one row per repeat and tool)"
    )
    for path in parser.parse_args(argv).samples:
        if not Path(path).is_file():
            parser.error(f"{path}: no such file (a run's samples/serving_perf__<model>__<config>.jsonl)")
        print(path)
        print("\n".join(rejudge(Path(path))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
