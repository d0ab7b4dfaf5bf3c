"""Run history: every run's metrics appended to one SQLite file, and the trend per (model/config, suite, metric).

    python -m harness history [--db reports/history.sqlite] [-k SUBSTRING] [--last 10]

The session appends its run when its report closes (`<report dir>/history.sqlite`, beside the run directories).
Schema (both tables keyed so a run appended twice replaces itself):

    runs(run_id TEXT PRIMARY KEY, started TEXT, git_sha TEXT, engine_versions TEXT, gpu TEXT)
    results(run_id TEXT, model TEXT, config TEXT, suite TEXT, metric TEXT, value REAL, passed INTEGER,
            verdict TEXT, PRIMARY KEY (run_id, model, config, suite, metric))

`passed` is the metric's check (1, 0, or NULL when unjudged); `verdict` the row's. `history` prints, oldest first,
each series' last values with their verdicts, and flags the nightly rule "two consecutive violations" (the last
two judged values both failed): one failing night can be noise, two in a row is a trend.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, started TEXT, git_sha TEXT, engine_versions TEXT, gpu TEXT);
CREATE TABLE IF NOT EXISTS results (run_id TEXT, model TEXT, config TEXT, suite TEXT, metric TEXT, value REAL,
    passed INTEGER, verdict TEXT, PRIMARY KEY (run_id, model, config, suite, metric));
"""


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
    with sqlite3.connect(db) as conn:
        conn.executescript(SCHEMA)
        conn.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)",
            (run_id, run.get("started"), run.get("git_sha"), ", ".join(versions), ", ".join(gpus)),
        )
        conn.execute("DELETE FROM results WHERE run_id = ?", (run_id,))
        conn.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def trends(db: Path, contains: str = "", last: int = 10) -> list[str]:
    """One line per series: `model/config suite metric: v1 (pass) → v2 (FAIL) → ...`, oldest first."""
    with sqlite3.connect(db) as conn:
        series = conn.execute(
            "SELECT r.model, r.config, r.suite, r.metric, r.value, r.passed FROM results r JOIN runs USING (run_id) "
            "ORDER BY r.model, r.config, r.suite, r.metric, runs.started, r.run_id"
        ).fetchall()
    grouped: dict[tuple, list[tuple[float, int | None]]] = {}
    for model, config, suite, metric, value, passed in series:
        grouped.setdefault((model, config, suite, metric), []).append((value, passed))
    lines = []
    for (model, config, suite, metric), points in grouped.items():
        name = f"{model}/{config} {suite} {metric}"
        if contains and contains not in name:
            continue
        shown = " → ".join(f"{v:.4g}{'' if p is None else ' (pass)' if p else ' (FAIL)'}" for v, p in points[-last:])
        judged = [p for _, p in points if p is not None]
        flag = "  [two consecutive violations]" if len(judged) >= 2 and judged[-1] == 0 and judged[-2] == 0 else ""
        lines.append(f"{name}: {shown}{flag}")
    return lines
