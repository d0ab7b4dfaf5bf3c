"""What SGLang's scheduler did during each run of a serving_perf side-by-side, read from the server's own log.

    python bench/sglang_log_batches.py reports/<run>/logs/<model>__<config>.log    (or a .log.gz)

Every run of either tool starts with a prefix-cache flush (the harness's `flush_cache`, bench_serving's
`--flush-cache`, after its warm-up), so the log splits into one window per run at each "Cache flushed
successfully". Per window: the `/generate` requests and the client ports they came from (bench_serving opens one
connection per request, the harness keeps its connections alive: the port count tells the tools apart), the
prefill batches and their mean new sequences, the longest prefill queue after the run's opening wave (a closed
loop whose replacements arrive together queues them behind chunked prefill), and the decode batch sizes logged.
"""

from __future__ import annotations

import gzip
import re
import statistics
import sys
from pathlib import Path

_PORT = re.compile(r'127\.0\.0\.1:(\d+) - "POST /generate')
_FIELD = {name: re.compile(rf"#{name}: (\d+)") for name in ("new-seq", "running-req", "queue-req")}
OPENING = 3  # prefill batches of a run's opening wave, left out of `mid_run_max_queue`


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
    return int(found.group(1)) if found else 0


def summarize(window: list[str]) -> dict | None:
    prefills = [line for line in window if "Prefill batch" in line]
    if not prefills:
        return None
    requests = sum(1 for line in window if _PORT.search(line))
    ports = {m.group(1) for line in window for m in [_PORT.search(line)] if m}
    queues = [_field("queue-req", line) for line in prefills]
    decode = [_field("running-req", line) for line in window if "Decode batch" in line]
    new = [_field("new-seq", line) for line in prefills]
    return {"requests": requests, "ports": len(ports), "prefill_batches": len(prefills),
            "mean_new_seqs": statistics.mean(new), "mid_run_max_queue": max(queues[OPENING:], default=0),
            "decode_running": decode}  # fmt: skip


def main(paths: list[str]) -> None:
    for path in paths:
        print(path)
        print(f"{'window':>6} {'requests':>8} {'ports':>6} {'prefills':>8} {'new/prefill':>11} {'mid-run max queue':>17}  decode running")
        raw = gzip.decompress(Path(path).read_bytes()) if path.endswith(".gz") else Path(path).read_bytes()
        for k, window in enumerate(windows(raw.decode(errors="replace").splitlines())):
            row = summarize(window)
            if row:
                print(f"{k:>6} {row['requests']:>8} {row['ports']:>6} {row['prefill_batches']:>8} "
                      f"{row['mean_new_seqs']:>11.1f} {row['mid_run_max_queue']:>17}  {row['decode_running']}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
