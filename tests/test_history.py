"""The run history (harness/report/history.py): two real runs of the harness into one report dir, then the trend.

A tiny random model on the HF engine fails GSM8K's floor every run, so the trend shows two FAILs and the nightly
rule flags them as two consecutive violations; the schema is the documented one.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from inner_run_support import assert_clean, run_inner, write_project

REPO = Path(__file__).resolve().parents[1]


def test_two_runs_make_a_trend_and_two_failures_in_a_row_are_flagged(tmp_path, tiny_model):
    write_project(tmp_path, tiny_model)
    text = (
        (tmp_path / "thresholds.yaml")
        .read_text()
        .replace("{metric: accuracy, min: 0.0,", "{metric: accuracy, min: 0.5,")
    )
    (tmp_path / "thresholds.yaml").write_text(text)
    for _ in range(2):
        run = run_inner(tmp_path, "-k", "gsm8k")
        assert run.rows()["gsm8k"]["verdict"] == "fail"
        assert_clean(run)
    db = tmp_path / "reports" / "history.sqlite"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
        columns = [row[1] for row in conn.execute("PRAGMA table_info(results)")]
        assert columns == ["run_id", "model", "config", "suite", "metric", "value", "passed", "verdict"]
    done = subprocess.run(
        [sys.executable, "-m", "harness", "history", "--db", str(db), "-k", "gsm8k accuracy"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "tiny/cfg gsm8k accuracy: 0 (FAIL) → 0 (FAIL)  [two consecutive violations]", lines
    assert lines[1].startswith("tiny/cfg gsm8k accuracy_strict: 0 → 0")
