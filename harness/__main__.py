"""`python -m harness compare BASE NEW`: a run against a baseline run (harness.compare); exit 1 when worse."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("compare", help="compare a run with a baseline run, row by row, question by question")
    compare.add_argument("base", help="the baseline run directory (reports/<run-id>/)")
    compare.add_argument("new", help="the run to judge")
    compare.add_argument("--alpha", type=float, default=0.05, help="McNemar's α. Default: %(default)s")
    compare.add_argument("--perf-tolerance", type=float, default=0.1,
                         help="serving_perf: relative change allowed. Default: %(default)s")
    compare.add_argument("--json", default=None, help="also write the comparison here. Default: none")
    opts = parser.parse_args(argv)
    from harness.compare import Run, compare_runs, release_verdict, write_comparison

    try:
        base, new = Run.load(opts.base), Run.load(opts.new)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = compare_runs(base, new, opts.alpha, opts.perf_tolerance)
    release, status = release_verdict(rows)
    for row in rows:
        print(row.line)
    print(release)
    if opts.json:
        write_comparison(Path(opts.json), base, new, rows, release)
    return status


if __name__ == "__main__":
    sys.exit(main())
