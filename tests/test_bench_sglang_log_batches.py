"""bench/sglang_log_batches.py: SGLang's server log read per run of a serving_perf side-by-side."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _module():
    """The bench script, loaded from its path (bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sglang_log_batches", REPO / "bench" / "sglang_log_batches.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sglang_log_batches_splits_runs_at_cache_flushes_and_reads_prefill_queues():
    """bench/sglang_log_batches.py on lines in SGLang 0.5.17's own format (the H200 log of 2026-12-03)."""
    module = _module()
    prefill = (
        "[2026-12-03 12:06:59] Prefill batch, #new-seq: {n}, #new-token: 256, #cached-token: {c}, token usage: 0.00, "
        "#running-req: {r}, #queue-req: {q}, #pending-token: 0, cuda graph: False, input throughput (token/s): 555.73"
    )
    decode = (
        "[2026-12-03 12:07:00] Decode batch, #running-req: {r}, #token: 38080, token usage: 0.29, cuda graph: True, "
        "gen throughput (token/s): 14316.63, #queue-req: 0"
    )
    post = '[2026-12-03 12:07:00] INFO:     127.0.0.1:{port} - "POST /generate HTTP/1.1" 200 OK'
    lines = [
        "[2026-12-03 12:04:30] server started",
        prefill.format(n=1, r=0, q=0, c=0),
        "[2026-12-03 12:04:38] Cache flushed successfully!",
        *(post.format(port=35000) for _ in range(3)),
        *(prefill.format(n=32, r=0, q=q, c=0) for q in (90, 60, 30, 0, 45)),
        decode.format(r=128),
        "[2026-12-03 12:05:14] Cache flushed successfully!",
        *(post.format(port=36000 + k) for k in range(2)),
        prefill.format(n=2, r=0, q=0, c=256),
    ]
    start, harness, bench = [module.summarize(w) for w in module.windows(lines)]
    assert start["requests"] == 0 and start["prefill_batches"] == 1
    assert harness == {
        "requests": 3,
        "ports": 1,
        "prefill_batches": 5,
        "cached_share": 0.0,
        "mean_new_seqs": 32,
        "mid_run_max_queue": 45,
        "decode_running": [128],
    }
    assert (bench["requests"], bench["ports"], bench["mid_run_max_queue"], bench["cached_share"]) == (2, 2, 0, 0.5)
    assert module.summarize(["no batches here"]) is None


def test_sglang_log_batches_names_a_changed_log_format():
    module = _module()
    with pytest.raises(ValueError, match=r"no #queue-req in a batch line \(has SGLang's log format changed\?\)"):
        module.summarize(["[t] Prefill batch, #new-seq: 1, #running-req: 0"])
    assert module.mid_run_max_queue([1, 1, 1], [5, 7, 9], concurrency=2) == 9  # the wave ends at the 2nd batch
