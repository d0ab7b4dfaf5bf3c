"""A failing run never looks green (issue 35, item 1): real runs of the harness on the tiny model (HF engine).

Every test has one row of its own with its verdict and reason, and summary.md, report.html and the CI step summary
open with the run's verdict, the failing and erroring tests first. Two runs: one with --harness-no-reference where
the prefill cache suite fails on NaN logprobs (tests/servers/fault_proxy.py) before any metric and a suite fails
after its metrics were recorded, GSM8K records; one where GSM8K has no reference at all, so none of its metrics is
gated and the test fails on the missing entry.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import test_faults
from inner_run_support import assert_clean, fault_proxy, run_inner, write_project

from harness.report.format import cell

engine = test_faults.engine  # the tiny model on the HF engine, one per module

NAN = (
    "logprob_prefill_cache_hit: sample canary-0: token 0: the server returned logprob None, not a finite number "
    "(orjson, which SGLang answers with, writes NaN and ±inf as null): the model's numerics broke (an overflow, a "
    "bad kernel)"
)
# prefix_branching as a project might write it: its own assertion after harness.check
OWN_ASSERTION = """from harness.evals.prefix_branching import PrefixBranching


def test_prefix_branching(harness):
    harness.check(harness.run(PrefixBranching()))
    assert harness.samples_kept == 0, f"the suite's own check: {harness.samples_kept} sample(s) kept, expected none"
"""
OWN_FAILURE = "AssertionError: the suite's own check: 1 sample(s) kept, expected none"


def latest_run(root: Path) -> Path:
    return sorted(p for p in (root / "reports").iterdir() if p.is_dir())[-1]


def text_of(fragment: str) -> str:
    """What a browser shows of an HTML fragment: the tags dropped, entities decoded."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", fragment))).strip()


def table_rows(page: str, table_id: str, verdict: str) -> list[list[str]]:
    """The cells' text of the rows of class `verdict` in the table `table_id`."""
    table = re.search(rf"<table id={table_id}>(.*?)</table>", page, re.DOTALL).group(1)
    rows = re.findall(rf"<tr class={verdict}[ >](.*?)</tr>", table)
    return [[text_of(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)] for row in rows]


def test_a_failing_no_reference_run_opens_with_fail_and_each_reason(tmp_path, tiny_model, engine):
    write_project(tmp_path, tiny_model)
    (tmp_path / "suites" / "test_prefix_branching.py").write_text(OWN_ASSERTION)
    step_summary = tmp_path / "step_summary.md"
    with fault_proxy(engine.base_url, "nan-logprobs") as url:
        run = run_inner(
            tmp_path,
            "--harness-base-url",
            url,
            "--harness-no-reference",
            env={"GITHUB_STEP_SUMMARY": str(step_summary)},
        )
    assert_clean(run)
    assert run.returncode == 1
    rows = run.rows()
    assert [rows[s]["verdict"] for s in ("gsm8k", "logprob_prefill_cache_hit", "prefix_branching")] == [
        "recorded",
        "fail",
        "fail",
    ]
    opening = [
        "**FAIL: 2 fail, 0 error, 0 pass, 1 recorded, 0 skipped (3 tests)**",
        "",
        f"- FAIL `logprob_prefill_cache_hit[tiny/cfg]`: {NAN}",
        f"- FAIL `prefix_branching[tiny/cfg]`: {OWN_FAILURE}",
        "",
    ]
    lines = run.summary.splitlines()
    assert lines[0].startswith("# Validation run ") and lines[1] == ""
    assert lines[2:7] == opening
    table = lines[lines.index("| test | verdict | reason |") :][:5]
    assert table == [
        "| test | verdict | reason |",
        "|---|---|---|",
        f"| logprob_prefill_cache_hit[tiny/cfg] | FAIL | {NAN} |",
        f"| prefix_branching[tiny/cfg] | FAIL | {OWN_FAILURE} |",
        "| gsm8k[tiny/cfg] | recorded | recorded, not judged; would pass: accuracy 0.000 ≥ min 0.000 — "
        "thresholds.yaml references.gsm8k.tiny[0] |",
    ]
    # the checks of a recorded test stay recorded after the test failed on its own assertion
    assert "| tiny | cfg | prefix_branching | branch_mismatches | 0 | ≤ 0 | recorded |" in lines
    # the CI step summary opens with the same block
    assert step_summary.read_text().splitlines()[2:7] == opening

    page = (latest_run(tmp_path) / "report.html").read_text()
    assert page.index("id=run-verdict") < page.index("<h2>Tests</h2>") < page.index("<h2>Checks</h2>")
    verdict = re.search(r"<p id=run-verdict class=FAIL>(.*?)</p>", page).group(1)
    assert text_of(verdict) == "FAIL: 2 fail, 0 error, 0 pass, 1 recorded, 0 skipped (3 tests)"
    first = re.findall(r"<li class=fail>(.*?)</li>", re.search(r"<ul id=run-first>(.*?)</ul>", page).group(1))
    assert [text_of(item) for item in first] == [
        f"FAIL logprob_prefill_cache_hit[tiny/cfg]: {NAN}",
        f"FAIL prefix_branching[tiny/cfg]: {OWN_FAILURE}",
    ]
    assert table_rows(page, "tests", "fail") == [
        ["logprob_prefill_cache_hit[tiny/cfg]", "FAIL", NAN],
        ["prefix_branching[tiny/cfg]", "FAIL", OWN_FAILURE],
    ]


def test_a_failure_with_no_gated_metric_is_a_fail_row_with_its_reason(tmp_path, tiny_model, engine):
    write_project(tmp_path, tiny_model)
    thresholds = (tmp_path / "thresholds.yaml").read_text()
    reference = "  gsm8k:\n    tiny: [{metric: accuracy, min: 0.0, provenance: random weights in a test}]\n"
    assert reference in thresholds
    (tmp_path / "thresholds.yaml").write_text(thresholds.replace(reference, ""))
    run = run_inner(tmp_path, "-k", "gsm8k", "--harness-base-url", engine.base_url)
    assert_clean(run)
    assert run.returncode == 1
    row = run.rows()["gsm8k"]
    assert row["verdict"] == "fail" and all(check["passed"] is None for check in row["checks"])
    reason = cell(row["failures"][0])  # its wording is the judge's (harness.verdict.judge)
    assert reason.startswith("thresholds.yaml: no reference for gsm8k[tiny/cfg] ")
    lines = run.summary.splitlines()
    assert lines[2:6] == [
        "**FAIL: 1 fail, 0 error, 0 pass, 0 recorded, 0 skipped (1 test)**",
        "",
        f"- FAIL `gsm8k[tiny/cfg]`: {reason}",
        "",
    ]
    assert f"| gsm8k[tiny/cfg] | FAIL | {reason} |" in lines
    assert "| tiny | cfg | gsm8k | accuracy | 0 | – | recorded |" in lines  # the check itself was not gated
