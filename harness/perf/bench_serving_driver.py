"""Run SGLang's `python -m sglang.bench_serving` several times in one process: one argument list per stdin line.

Each line is a JSON list of bench_serving arguments; the driver runs the module as `__main__` with them
(`runpy`, so its own parser and `main` run, whatever the SGLang version calls them) and then prints
`MARKER <exit status>` on its own line. The first run pays for importing sglang (about 25 s on the H200 machine,
2026-12-02, most of a 30 s light run); later runs reuse the imported modules and pay only for their requests.
Started (by path) and stopped by harness.perf.bench_serving.Driver.
"""

from __future__ import annotations

import json
import runpy
import sys
import traceback
from pathlib import Path

MARKER = "@@bench_serving_driver done"


def run(argv: list[str]) -> int:
    sys.argv = ["sglang.bench_serving", *argv]
    try:
        runpy.run_module("sglang.bench_serving", run_name="__main__", alter_sys=False)
    except SystemExit as stop:  # argparse errors and explicit exits keep their status
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception:  # noqa: BLE001 - reported through the exit status and the output tail
        traceback.print_exc()
        return 1
    return 0


def main() -> int:
    # Started by path: its own folder (harness/perf) would come first on sys.path and shadow top-level modules.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    for line in sys.stdin:
        if not line.strip():
            continue
        status = run(json.loads(line))
        print(f"\n{MARKER} {status}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
