"""The lm_eval suite (harness/evals/lm_eval_suite.py) in real runs of the harness on the canary and the HF engine.

The committed task (assets/lm_eval/canary_gsm8k.yaml: the harness's GSM8K prompt, shots, stops and budget)
through lm-eval's local-completions answers every question as the harness's own GSM8K does on the same server
(paired by id); a server that answers 5xx makes the suite an error naming lm-eval, never a score; a missing task
file is a config error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inner_run_support import assert_clean, fault_proxy, run_inner

from harness.config.spec import ServerSpec
from harness.serve.engines import get_engine
from harness.serve.server import LifecycleOptions, Server

pytest.importorskip("lm_eval")

REPO = Path(__file__).resolve().parents[1]
CANARY = REPO / "assets" / "canary"
OPTIONS = {
    "gsm8k": "{{source: {data}, num_shots: 5, max_new_tokens: 96}}",
    "lm_eval": "{{task_yaml: {task}, num_fewshot: 5, max_retries: 1}}",
}


def thresholds(suites: list[str], data: Path, task: Path) -> str:
    options = "".join(f"      {s}: {OPTIONS[s].format(data=data, task=task)}\n" for s in suites)
    references = "".join(f"  {s}:\n    canary: [{{metric: accuracy, min: 0.5, provenance: test}}]\n" for s in suites)
    return (
        f"models:\n  canary:\n    path: {CANARY / 'model'}\n    engine: hf\n    dtype: float32\n    options:\n"
        f"{options}    configs:\n      cpu:\n        args: []\n        suites: [{', '.join(suites)}]\n"
        f"references:\n{references}"
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    spec = ServerSpec(model="canary", config="upstream", model_path=str(CANARY / "model"), engine="hf")
    with Server(
        spec,
        get_engine(spec.engine),
        log_dir=tmp_path_factory.mktemp("upstream"),
        options=LifecycleOptions(grace_period=10),
    ) as server:
        yield server


def project(root: Path, suites: tuple[str, ...] = ("gsm8k", "lm_eval"), task: Path | None = None) -> Path:
    """A project whose data is the canary's first 40 test questions, in the committed task's layout (`lm_eval/` the
    task file, `canary/data/` what it names relatively)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "canary" / "data").mkdir(parents=True)
    (root / "canary" / "data" / "test.jsonl").write_text(
        "".join((CANARY / "data" / "test.jsonl").read_text().splitlines(True)[:40])
    )
    (root / "canary" / "data" / "train.jsonl").write_text((CANARY / "data" / "train.jsonl").read_text())
    (root / "lm_eval").mkdir()
    (root / "lm_eval" / "canary_gsm8k.yaml").write_text((REPO / "assets" / "lm_eval" / "canary_gsm8k.yaml").read_text())
    task = task or root / "lm_eval" / "canary_gsm8k.yaml"
    (root / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    text = thresholds(list(suites), root / "canary" / "data", task)
    (root / "thresholds.yaml").write_text(text)
    (root / "suites").mkdir(exist_ok=True)
    for suite in suites:
        (root / "suites" / f"test_{suite}.py").write_text((REPO / "suites" / f"test_{suite}.py").read_text())
    return root


def samples(root: Path, suite: str) -> dict[str, dict]:
    path = next((root / "reports").glob(f"*/samples/{suite}__canary__cpu.jsonl"))
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_lm_eval_answers_as_the_harness_does_question_by_question(tmp_path, engine):
    with fault_proxy(engine.base_url, "none") as url:
        run = run_inner(project(tmp_path), "--harness-base-url", url, timeout=400)
    rows = run.rows()
    assert rows["lm_eval"]["verdict"] == "pass", run.output[-3000:]
    assert rows["lm_eval"]["details"]["task"] == "canary_gsm8k" and rows["lm_eval"]["n"] == 40
    ours, theirs = samples(tmp_path, "gsm8k"), samples(tmp_path, "lm_eval")
    assert sorted(ours) == sorted(theirs) and len(theirs) == 40  # the same 40 questions, by the same ids
    for key in ours:
        assert float(ours[key]["extracted_flexible"]) == float(theirs[key]["parsed"]), key
        assert ours[key]["correct"] == theirs[key]["correct"], key
    assert_clean(run)


def test_a_failing_server_is_an_error_naming_lm_eval_not_a_score(tmp_path, engine):
    with fault_proxy(engine.base_url, "5xx-always") as url:
        run = run_inner(project(tmp_path, suites=("lm_eval",)), "--harness-base-url", url, timeout=400)
    row = run.rows()["lm_eval"]
    assert row["verdict"] == "error", run.output[-3000:]
    line = next(line for line in run.output.splitlines() if "lm-eval stopped: " in line and "ERROR" in line)
    assert line.startswith("lm_eval[canary/cpu]: ERROR: lm-eval stopped: "), line  # the test's id once, not twice
    assert_clean(run)


def test_a_missing_task_file_is_a_config_error_naming_it(tmp_path, engine):
    missing = tmp_path / "nope.yaml"
    with fault_proxy(engine.base_url, "none") as url:
        run = run_inner(project(tmp_path / "p", suites=("lm_eval",), task=missing), "--harness-base-url", url)
    assert run.rows()["lm_eval"]["verdict"] == "error"
    assert f"lm_eval.task_yaml: {missing} does not exist" in run.output
