"""What SGLang's scheduler did during each run of a serving_perf side-by-side, read from the server's own log.

    python bench/sglang_log_batches.py reports/<run>/logs/<model>__<config>.log    (or a .log.gz)

Every run of either tool starts with a prefix-cache flush (the harness's `flush_cache`, bench_serving's
`--flush-cache`, after its warm-up), so the log splits into one window per run at each "Cache flushed
successfully". bench_serving's warm-up requests (2 by default) come before its flush, so they end the previous
window. Per window: the `/generate` requests and the distinct client ports they came from (a lower bound on
connections, as the kernel reuses loopback ports; bench_serving opens one connection per request, the harness keeps
its connections alive, so the count tells the tools apart), the prefill batches and their mean new sequences, the
share of prompt tokens served from the prefix cache (`#cached-token` over cached plus `#new-token`: equal prompts in
one run are hits; bench_serving's own random-ids repeated prompts on the canary tokenizer's 485 ids, 31-35 % of a
512-prompt run; a window also holds the next bench_serving run's warm-up, its first prompt twice, a hit where that
prompt is still cached: 11.1 % of a 16-prompt window, 1 % of a 200-prompt one), the longest prefill queue after
the run's opening wave (the wave ends at the prefill batch by which as many sequences were admitted as the most
decode batches ran at once), and the decode batch sizes logged. A prefill or decode line
without the expected fields raises: SGLang's log format changed.
"""

from __future__ import annotations

import gzip
import re
import statistics
import sys
from pathlib import Path

_PORT = re.compile(r'(\S+:\d+) - "POST /generate')
_FIELD = {
    name: re.compile(rf"#{name}: (\d+)")
    for name in ("new-seq", "running-req", "queue-req", "new-token", "cached-token")
}


def windows(lines) -> list[list[str]]:
    """The log's lines split at every cache flush (the first window is the server's start and warm-up)."""
    out: list[list[str]] = [[]]
    for line in lines:
        if "Cache flushed successfully" in line:
            out.append([])
        else:
            out[-1].append(line)
    return out


def _field(name: str, line: str) -> int:
    found = _FIELD[name].search(line)
    if not found:
        raise ValueError(f"no #{name} in a batch line (has SGLang's log format changed?): {line[:200]}")
    return int(found.group(1))


def mid_run_max_queue(new_seqs: list[int], queues: list[int], concurrency: int) -> int:
    """The longest prefill queue after the opening wave: the batches up to the one by which `concurrency`
    sequences had been admitted."""
    admitted, opening = 0, len(new_seqs)
    for k, n in enumerate(new_seqs):
        admitted += n
        if admitted >= concurrency:
            opening = k + 1
            break
    return max(queues[opening:], default=0)


def summarize(window: list[str]) -> dict | None:
    prefills = [line for line in window if "Prefill batch" in line]
    if not prefills:
        return None
    requests = sum(1 for line in window if _PORT.search(line))
    ports = {m.group(1) for line in window for m in [_PORT.search(line)] if m}
    queues = [_field("queue-req", line) for line in prefills]
    decode = [_field("running-req", line) for line in window if "Decode batch" in line]
    new = [_field("new-seq", line) for line in prefills]
    concurrency = max(decode, default=1)
    cached = sum(_field("cached-token", line) for line in prefills)
    computed = sum(_field("new-token", line) for line in prefills)
    return {
        "requests": requests,
        "ports": len(ports),
        "prefill_batches": len(prefills),
        "cached_share": cached / max(cached + computed, 1),
        "mean_new_seqs": statistics.mean(new),
        "mid_run_max_queue": mid_run_max_queue(new, queues, concurrency),
        "decode_running": decode,
    }


def main(paths: list[str]) -> None:
    if not paths:
        raise SystemExit(__doc__)
    for path in paths:
        print(path)
        print(
            f"{'window':>6} {'requests':>8} {'ports':>6} {'prefills':>8} {'cached':>7} {'new/prefill':>11} "
            f"{'mid-run max queue':>17}  decode running"
        )
        raw = gzip.decompress(Path(path).read_bytes()) if path.endswith(".gz") else Path(path).read_bytes()
        for k, window in enumerate(windows(raw.decode(errors="replace").splitlines())):
            row = summarize(window)
            if row:
                print(
                    f"{k:>6} {row['requests']:>8} {row['ports']:>6} {row['prefill_batches']:>8} "
                    f"{row['cached_share']:>7.1%} "
                    f"{row['mean_new_seqs']:>11.1f} {row['mid_run_max_queue']:>17}  {row['decode_running']}"
                )


if __name__ == "__main__":
    main(sys.argv[1:])
