"""compare on real runs (issue 35, item 8): a config skipped for lack of GPUs and a row that fails in both runs.

Four runs of the harness on the tiny model (HF engine, launched by the harness, `--harness-gpus 0`): the project has
a config that needs 2 GPUs, skipped in every run, beside one that runs. With GSM8K's floor at 0 the skipped row is
`skipped` and the rest is judged: release not worse, exit 0, from `python -m harness compare` and from
`--harness-baseline`. With the floor at 0.5 the tiny model fails it in both runs: `still failing`, and the release
fails (exit 1), where the same answers alone would have read `same`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inner_run_support import assert_clean, run_inner, write_project
from test_compare import compare_cli
from test_run_verdict import latest_run

BIG = "      big:\n        args: []\n        gpus: 2\n        suites: [gsm8k]\n"
SKIPPED = (
    "gsm8k[tiny/big]: skipped: the baseline: tiny/big needs 2 GPU(s), 0 available (--harness-gpus / "
    "CUDA_VISIBLE_DEVICES)"
)
SAME = "same: 0 broken, 0 fixed of 40 (McNemar exact two-sided p=1 ≥ α=0.05)"


def project(root: Path, tiny_model: Path, floor: float) -> Path:
    write_project(root, tiny_model)
    text = (root / "thresholds.yaml").read_text()
    text = text.replace("    configs:\n", "    configs:\n" + BIG, 1).replace(
        "{metric: accuracy, min: 0.0,", f"{{metric: accuracy, min: {floor},"
    )
    (root / "thresholds.yaml").write_text(text)
    return root


def one_run(root: Path, *extra: str):
    run = run_inner(root, "-k", "gsm8k", "--harness-gpus", "0", *extra)
    assert_clean(run)
    return run, latest_run(root)


@pytest.mark.parametrize("floor", [0.0, 0.5])
def test_a_config_skipped_for_gpus_is_skipped_and_a_row_failing_twice_is_still_failing(tmp_path, tiny_model, floor):
    root = project(tmp_path / "p", tiny_model, floor)
    first, base = one_run(root)
    assert {row["case"]: row["verdict"] for row in first.results["tests"]} == {
        "tiny/cfg": "pass" if floor == 0.0 else "fail",
        "tiny/big": "skipped",
    }
    second, new = one_run(root, f"--harness-baseline={base}")
    done = compare_cli(base, new)
    if floor == 0.0:
        lines = [
            SKIPPED,
            f"gsm8k[tiny/cfg]: {SAME}",
            "release: not worse (0 worse, 0 not comparable, 0 better, 1 same, 1 skipped)",
        ]
        assert (done.returncode, second.returncode) == (0, 0), done.stdout + done.stderr
    else:
        failure = json.loads((new / "results.json").read_text())["tests"]
        reason = next(t for t in failure if t["case"] == "tiny/cfg")["failures"][0].splitlines()
        assert reason == [
            "gsm8k[tiny/cfg]: accuracy 0.000 < min 0.500 — thresholds.yaml references.gsm8k.tiny[0]",
            "  observed accuracy 95% Wilson interval: [0.000, 0.088]",
        ]  # the row's reason is its first line
        lines = [
            SKIPPED,
            f"gsm8k[tiny/cfg]: still failing: accuracy 0.000 < min 0.500 — thresholds.yaml references.gsm8k.tiny[0] "
            f"(as in the baseline; {SAME})",
            "release: still failing (0 worse, 0 not comparable, 0 better, 0 same, 1 still failing, 1 skipped)",
        ]
        assert (done.returncode, second.returncode) == (1, 1), done.stdout + done.stderr
    assert done.stdout.splitlines() == lines
    output = second.output.splitlines()
    assert output[output.index(f"baseline: {base}") + 1 :][:3] == lines  # the same comparison, in the session
    comparison = json.loads((new / "comparison.json").read_text())
    assert [row["verdict"] for row in comparison["rows"]] == ["skipped", "same" if floor == 0.0 else "still failing"]
