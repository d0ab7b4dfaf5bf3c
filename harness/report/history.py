"""Run history: every run's metrics appended to one SQLite file, and the trend per (model/config, suite, metric).

    python -m harness history [--db reports/history.sqlite] [-k SUBSTRING] [--last 10]

The session appends its run when its report closes (`<report dir>/history.sqlite`, beside the run directories).
Schema (both tables keyed so a run appended twice replaces itself):

    runs(run_id TEXT PRIMARY KEY, started TEXT, git_sha TEXT, engine_versions TEXT, gpu TEXT, git_dirty INTEGER,
         kind TEXT, series TEXT, options TEXT)
    results(run_id TEXT, model TEXT, config TEXT, suite TEXT, metric TEXT, value REAL, passed INTEGER,
            verdict TEXT, PRIMARY KEY (run_id, model, config, suite, metric))

`passed` is the metric's check (1, 0, or NULL when unjudged); `verdict` the row's. `history` prints, oldest first,
each series' last values with their verdicts, and flags the nightly rule "two consecutive violations" (the last
two judged values both failed): one failing night can be noise, two in a row is a trend.

A series is one (model/config, suite, metric) run one way: `kind` (full | limited | smoke | no-reference) and
`series` (harness.report.run_info.series_of: the kind with its limit, an engine override; "" for a full run) keep a
limited or smoke run out of the full runs' trend, shown as its own series (`... accuracy [limited to 30]: ...`).
`options` is the run's options as JSON. A history written before runs kept their options gets the new columns
(NULL: its runs are the series `unrecorded`).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from harness.report.run_info import series_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, started TEXT, git_sha TEXT, engine_versions TEXT, gpu TEXT,
    git_dirty INTEGER, kind TEXT, series TEXT, options TEXT);
CREATE TABLE IF NOT EXISTS results (run_id TEXT, model TEXT, config TEXT, suite TEXT, metric TEXT, value REAL,
    passed INTEGER, verdict TEXT, PRIMARY KEY (run_id, model, config, suite, metric));
"""
ADDED_RUN_COLUMNS = ("git_dirty INTEGER", "kind TEXT", "series TEXT", "options TEXT")  # since issue 35
UNRECORDED = "unrecorded"  # the series of a run appended before runs kept their options


def open_history(db: Path) -> sqlite3.Connection:
    """The history, created or brought to the current schema (a file from before gets the added columns)."""
    conn = sqlite3.connect(db)
    conn.executescript(SCHEMA)
    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for column in ADDED_RUN_COLUMNS:
        if column.split()[0] not in have:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {column}")
    return conn


def append_run(db: Path, run_dir: Path) -> int:
    """Add `run_dir`'s results.json to the history; returns the number of metric values written."""
    data = json.loads((run_dir / "results.json").read_text())
    run = data.get("run", {})
    run_id = run.get("run_id") or run_dir.name
    versions = sorted({s.get("version") or "" for s in data.get("servers", {}).values()} - {""})
    gpus = (run.get("gpus") or {}).get("names") or []
    rows = []
    for test in data.get("tests", []):
        model, _, config = test["case"].partition("/")
        passed = {c["metric"]: c.get("passed") for c in test.get("checks", [])}
        for metric, value in (test.get("metrics") or {}).items():
            if isinstance(value, (int, float)):
                judged = passed.get(metric)
                rows.append(
                    (
                        run_id,
                        model,
                        config,
                        test["suite"],
                        metric,
                        float(value),
                        None if judged is None else int(bool(judged)),
                        test.get("verdict"),
                    )
                )
    dirty = run.get("git_dirty")
    with open_history(db) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                run.get("started"),
                run.get("git_sha"),
                ", ".join(versions),
                ", ".join(gpus),
                None if dirty is None else int(dirty),
                run.get("kind"),
                series_of(run),
                json.dumps(run["options"], sort_keys=True) if run.get("options") is not None else None,
            ),
        )
        conn.execute("DELETE FROM results WHERE run_id = ?", (run_id,))
        conn.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def trends(db: Path, contains: str = "", last: int = 10) -> list[str]:
    """One line per series: `model/config suite metric: v1 (pass) → v2 (FAIL) → ...`, oldest first; a series of
    runs that were not full runs says how they were run: `model/config suite metric [limited to 30]: ...`."""
    with open_history(db) as conn:
        series = conn.execute(
            f"SELECT r.model, r.config, r.suite, r.metric, COALESCE(runs.series, '{UNRECORDED}'), r.value, r.passed "
            "FROM results r JOIN runs USING (run_id) "
            "ORDER BY r.model, r.config, r.suite, r.metric, runs.series, runs.started, r.run_id"
        ).fetchall()
    grouped: dict[tuple, list[tuple[float, int | None]]] = {}
    for model, config, suite, metric, how, value, passed in series:
        grouped.setdefault((model, config, suite, metric, how), []).append((value, passed))
    lines = []
    for (model, config, suite, metric, how), points in grouped.items():
        name = f"{model}/{config} {suite} {metric}" + (f" [{how}]" if how else "")
        if contains and contains not in name:
            continue
        shown = " → ".join(f"{v:.4g}{'' if p is None else ' (pass)' if p else ' (FAIL)'}" for v, p in points[-last:])
        judged = [p for _, p in points if p is not None]
        flag = "  [two consecutive violations]" if len(judged) >= 2 and judged[-1] == 0 and judged[-2] == 0 else ""
        lines.append(f"{name}: {shown}{flag}")
    return lines
