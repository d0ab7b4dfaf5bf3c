"""`python -m harness compare BASE NEW`: a run against a baseline run (harness.report.compare), exit 1 when worse;
`python -m harness history`: every metric's trend over the runs (harness.report.history);
`python -m harness report RUN_DIR`: (re)render the run's report.html (harness.report.html);
`python -m harness init MODEL_PATH [--name NAME]`: add a model to thresholds.yaml, configs for its architecture and
reference entries not measured yet (harness.config.scaffold);
`python -m harness schema [--out thresholds.schema.json]`: write thresholds.yaml's JSON Schema
(harness.config.schema)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="The harness's verbs on runs and on thresholds.yaml (the suites themselves run under pytest: "
        "pytest suites -k MODEL).",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="VERB", title="verbs")
    compare = commands.add_parser("compare", help="compare a run with a baseline run, row by row, question by question")
    compare.add_argument("base", help="the baseline run directory (reports/<run-id>/)")
    compare.add_argument("new", help="the run to judge")
    compare.add_argument("--alpha", type=float, default=0.05, help="McNemar's α. Default: %(default)s")
    compare.add_argument(
        "--perf-tolerance", type=float, default=0.1, help="serving_perf: relative change allowed. Default: %(default)s"
    )
    compare.add_argument("--json", default=None, help="also write the comparison here. Default: none")
    history = commands.add_parser("history", help="the trend of every metric over the runs in the history file")
    history.add_argument("--db", default="reports/history.sqlite", help="the history file. Default: %(default)s")
    history.add_argument(
        "-k",
        dest="contains",
        default="",
        help="only series whose 'model/config suite metric' contains this. Default: all",
    )
    history.add_argument("--last", type=int, default=10, help="values shown per series. Default: %(default)s")
    report = commands.add_parser("report", help="render a run directory's report.html")
    report.add_argument("run_dir", help="the run directory (reports/<run-id>/)")
    report.add_argument(
        "--history", default=None, help="the history file plotted. Default: <run dir>/../history.sqlite"
    )
    schema = commands.add_parser("schema", help="write thresholds.yaml's JSON Schema (editor completion; CI checks it)")
    schema.add_argument("--out", default="thresholds.schema.json", help="where to write it. Default: %(default)s")
    init = commands.add_parser("init", help="add a model to thresholds.yaml: configs for its architecture, references")
    init.add_argument("model_path", help="a local model directory or a hub id (its config.json is read)")
    init.add_argument("--name", default=None, help="the model's name in thresholds.yaml. Default: from the path")
    init.add_argument("--engine", choices=("sglang", "hf"), default="sglang", help="Default: %(default)s")
    init.add_argument("--config", default="thresholds.yaml", help="the file to add to. Default: %(default)s")
    init.add_argument(
        "--option", action="append", default=[], metavar="SUITE.KEY=VALUE", help="a suite option (repeatable)"
    )
    opts = parser.parse_args(argv)
    if opts.command == "init":
        return _init(opts)
    if opts.command == "schema":
        from harness.config.schema import json_schema_text

        Path(opts.out).write_text(json_schema_text(), encoding="utf-8")
        print(opts.out)
        return 0
    if opts.command == "history":
        return _history(opts)
    if opts.command == "report":
        return _report(opts)
    from harness.report.compare import Run, compare_runs, release_verdict, write_comparison

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


def _init(opts) -> int:
    from harness.config.scaffold import scaffold_model
    from harness.errors import ConfigError

    try:
        lines = scaffold_model(opts.config, opts.model_path, opts.name, opts.engine, opts.option)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _report(opts) -> int:
    from harness.report.html import write_html

    run_dir = Path(opts.run_dir)
    if not (run_dir / "results.json").is_file():
        print(f"error: {run_dir}: no results.json (not a run directory)", file=sys.stderr)
        return 2
    print(write_html(run_dir, Path(opts.history) if opts.history else run_dir.parent / "history.sqlite"))
    return 0


def _history(opts) -> int:
    from harness.report.history import trends

    if not Path(opts.db).is_file():
        print(f"error: {opts.db}: no history file (a run writes <report dir>/history.sqlite)", file=sys.stderr)
        return 2
    lines = trends(Path(opts.db), opts.contains, opts.last)
    print("\n".join(lines) if lines else f"no series match {opts.contains!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
