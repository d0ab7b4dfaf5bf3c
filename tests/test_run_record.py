"""Runs record how they were run (issue 35, item 5): real runs of the harness on the tiny model (HF engine).

results.json, summary.md, report.html and history.sqlite carry the options (limit, smoke, no-reference,
update-thresholds, the config file and its sha256, -k/-m, shard, engine, the base URL with secrets masked), the
run's kind, and the git sha of the project's own repository with a dirty flag; a tree copied into another
repository says `unknown`. The history keeps a limited run's values apart from the full runs' trend, and
`python -m harness compare` will not take a limited run as a full run's baseline.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import test_faults
from inner_run_support import assert_clean, run_inner, write_project
from test_run_verdict import latest_run, text_of

from harness.report.run_info import run_kind, series_of
from harness.serve.secrets import scrub_url

engine = test_faults.engine  # the tiny model on the HF engine, one per module
REPO = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def harness_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_the_options_the_projects_own_sha_and_apart_series(tmp_path, tiny_model, engine):
    project = tmp_path / "p"
    write_project(project, tiny_model)
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-qm", "the project")
    head = git(project, "rev-parse", "HEAD")
    config = project / "thresholds.yaml"
    url = engine.base_url

    limited = run_inner(project, "-k", "gsm8k", "--harness-limit", "10", "--harness-base-url", url)
    assert_clean(limited)
    assert limited.returncode == 0 and limited.rows()["gsm8k"]["n"] == 10
    run = limited.results["run"]
    assert (run["git_sha"], run["git_dirty"], run["kind"]) == (head, False, "limited")
    assert run["options"] == {
        "limit": 10,
        "smoke": False,
        "no_reference": False,
        "update_thresholds": False,
        "config": str(config),
        "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest(),
        "keyword": "gsm8k",
        "markers": None,
        "shard": None,
        "engine": "yaml",
        "base_url": url,
        "gpus": None,
        "baseline": None,
        "args": [
            *("suites", "-p", "no:cacheprovider", "-rA", "--harness-concurrency", "4"),
            *("-k", "gsm8k", "--harness-limit", "10", "--harness-base-url", url),
        ],
    }
    described = (
        f"run: kind limited, --harness-limit 10, -k 'gsm8k', --harness-base-url {url}, "
        f"config {config} (sha256 {run['options']['config_sha256'][:12]})"
    )
    assert described in limited.summary.splitlines()
    assert f"harness 0.1.0, git {head[:12]}, started {run['started']}" in limited.summary.splitlines()
    limited_dir = latest_run(project)
    page = (limited_dir / "report.html").read_text()
    assert text_of(re.search(r"<p id=run-options>(.*?)</p>", page).group(1)) == described

    config.write_text(config.read_text().replace("random weights in a test", "random weights in a test (edited)"))
    full = run_inner(project, "-k", "gsm8k", "--harness-base-url", engine.base_url)
    assert_clean(full)
    run = full.results["run"]
    assert (run["git_sha"], run["git_dirty"], run["kind"]) == (head, True, "full")  # a tracked file changed
    assert run["options"]["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert f"harness 0.1.0, git {head[:12]} (dirty), started {run['started']}" in full.summary.splitlines()

    db = project / "reports" / "history.sqlite"
    with sqlite3.connect(db) as conn:
        runs = conn.execute("SELECT git_sha, git_dirty, kind, series, options FROM runs ORDER BY started").fetchall()
    assert [row[:4] for row in runs] == [(head, 0, "limited", "limited to 10"), (head, 1, "full", "")]
    assert json.loads(runs[0][4])["limit"] == 10
    history = harness_cli("history", "--db", str(db), "-k", "gsm8k accuracy")
    assert history.returncode == 0, history.stderr
    assert history.stdout.splitlines()[:2] == [
        "tiny/cfg gsm8k accuracy: 0 (pass)",
        "tiny/cfg gsm8k accuracy [limited to 10]: 0 (pass)",
    ]
    compared = harness_cli("compare", str(limited_dir), str(latest_run(project)))
    assert compared.returncode == 2, compared.stdout + compared.stderr
    assert compared.stdout.splitlines() == [
        "gsm8k[tiny/cfg]: not comparable: the runs were run differently (the baseline: limited; this run: full)",
        "release: not comparable (0 worse, 1 not comparable, 0 better, 0 same)",
    ]


def test_a_tree_copied_into_another_repository_reports_an_unknown_sha(tmp_path, tiny_model, engine):
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "README").write_text("another project\n")
    git(parent, "init", "-q")
    git(parent, "add", "README")
    git(parent, "commit", "-qm", "the parent")
    write_project(tmp_path / "p", tiny_model)
    copy = parent / "vendor" / "p"
    shutil.copytree(tmp_path / "p", copy)
    run = run_inner(copy, "-k", "gsm8k", "--harness-base-url", engine.base_url)
    assert_clean(run)
    assert (run.results["run"]["git_sha"], run.results["run"]["git_dirty"]) == ("unknown", None)
    assert f"harness 0.1.0, git unknown, started {run.results['run']['started']}" in run.summary.splitlines()


@pytest.mark.parametrize(
    "options, kind, series",
    [
        ({"limit": None, "engine": "yaml"}, "full", ""),
        ({"limit": 30, "engine": "attach"}, "limited", "limited to 30"),
        ({"limit": 30, "smoke": True, "engine": "yaml"}, "smoke", "smoke"),
        ({"no_reference": True, "engine": "hf"}, "no-reference", "no-reference, engine hf"),
        ({"engine": "sglang"}, "full", "engine sglang"),
    ],
)
def test_each_way_of_running_is_its_own_series(options, kind, series):
    assert (run_kind(options), series_of({"options": options})) == (kind, series)
    assert series_of({}) is None  # a run from before runs kept their options


def test_a_base_url_is_recorded_without_its_secrets():
    assert scrub_url("http://127.0.0.1:30000") == "http://127.0.0.1:30000"
    assert (
        scrub_url("https://ci:hunter2@gpu-box:30000/v1?api_key=abc&x=1")
        == "https://ci:***@gpu-box:30000/v1?api_key=***&x=1"
    )
    assert scrub_url("http://hf_abcdefghijklmnop@gpu-box:30000") == "http://***@gpu-box:30000"
