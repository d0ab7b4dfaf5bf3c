"""Run SGLang's `python -m sglang.bench_serving` several times in one process: one argument list per stdin line.

Each line is a JSON list of bench_serving arguments, or an object `{"argv": [...], "requests": PATH}`; the driver
runs the module as `__main__` with them (`runpy`, so its own parser and `main` run, whatever the SGLang version
calls them) and then prints `MARKER <exit status>` on its own line. With `requests`, that run sends exactly the
requests in PATH (JSON lines `{"prompt": ids or text, "prompt_len", "output_len"}`: the harness's own, so both tools
time the same requests) instead of drawing its own: `sglang.benchmark.serving` looks `get_dataset` up in its
module namespace when it runs (0.5.17 and 0.5.23), and for that run the name returns these rows. Its client, its
warm-up (the first request, as always), its flush and its metrics are untouched. The first run pays for importing
sglang (about 25 s on the H200 machine,
2026-12-02, most of a 30 s light run); later runs reuse the imported modules and pay only for their requests.
Started (by path) and stopped by harness.evals.perf.bench_serving.Driver.
"""

from __future__ import annotations

import json
import runpy
import sys
import traceback
from pathlib import Path

MARKER = "@@bench_serving_driver done"


def run(argv: list[str], requests: str | None = None) -> int:
    sys.argv = ["sglang.bench_serving", *argv]
    restore = None
    try:
        restore = _send_these(requests) if requests else None
        runpy.run_module("sglang.bench_serving", run_name="__main__", alter_sys=False)
    except SystemExit as stop:  # argparse errors and explicit exits keep their status
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        if restore is not None:
            restore()
    return 0


def _send_these(path: str):
    """Make bench_serving's next run send the requests in `path`; returns what undoes it."""
    import importlib

    serving = importlib.import_module("sglang.benchmark.serving")
    if not callable(getattr(serving, "get_dataset", None)):
        raise RuntimeError(
            "this SGLang's sglang.benchmark.serving has no get_dataset to hand the harness's requests "
            "to (0.5.17 and 0.5.23 have it); run serving_perf with bench_serving_prompts: own"
        )
    from sglang.benchmark.datasets import DatasetRow

    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    dataset = [
        DatasetRow(prompt=r["prompt"], prompt_len=int(r["prompt_len"]), output_len=int(r["output_len"])) for r in rows
    ]
    original = serving.get_dataset
    serving.get_dataset = lambda args, tokenizer, model_id=None: list(dataset)
    return lambda: setattr(serving, "get_dataset", original)


def main() -> int:
    # Started by path: its own folder (harness/evals/perf) would come first on sys.path and shadow top-level modules.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        status = run(job, None) if isinstance(job, list) else run(job["argv"], job.get("requests"))
        print(f"\n{MARKER} {status}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
