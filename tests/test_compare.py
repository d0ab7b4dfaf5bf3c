"""A run against a baseline run (harness/report/compare.py), on real runs of the harness: the canary on the HF engine.

Three runs of GSM8K on 200 canary questions through tests/servers/fault_proxy.py: two clean ones, and one whose
proxy turns 5 % of the answers (the same questions every run, by a hash of the request) into "#### -1". The
clean pair compares `same`; the faulty run is `worse` with McNemar's p, the counts and the first broken question
ids, from `python -m harness compare` (exit 1) and from `--harness-baseline` (the session fails). A run on other
questions is `not comparable`, never a pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from inner_run_support import assert_clean, fault_proxy, matches, run_inner

from harness.config.spec import ServerSpec
from harness.serve.engines import get_engine
from harness.serve.server import LifecycleOptions, Server

REPO = Path(__file__).resolve().parents[1]
CANARY = REPO / "assets" / "canary"
PROJECT = f"""\
models:
  canary:
    path: {CANARY / "model"}
    engine: hf
    dtype: float32
    options:
      gsm8k: {{source: {CANARY / "data"}, num_shots: 5, max_new_tokens: 96}}
    configs:
      cpu:
        args: []
        suites: [gsm8k]
references:
  gsm8k:
    canary: [{{metric: accuracy, min: 0.5, provenance: test}}]
"""


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


def project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    (root / "thresholds.yaml").write_text(PROJECT)
    (root / "suites").mkdir(exist_ok=True)
    (root / "suites" / "test_gsm8k.py").write_text((REPO / "suites" / "test_gsm8k.py").read_text())
    return root


def one_run(root: Path, engine, fault: str = "none", limit: int = 200, *extra: str):
    with fault_proxy(engine.base_url, fault, "--rate", "5") as url:
        run = run_inner(project(root), "--harness-base-url", url, "--harness-limit", str(limit), *extra)
    assert_clean(run)
    return run, next(p for p in (root / "reports").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, engine):
    base = tmp_path_factory.mktemp("runs")
    return {
        name: one_run(base / name, engine, fault)[1]
        for name, fault in (("clean1", "none"), ("clean2", "none"), ("faulty", "wrong-answers"))
    }


def compare_cli(base: Path, new: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", "compare", str(base), str(new)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_two_clean_runs_are_the_same(runs):
    done = compare_cli(runs["clean1"], runs["clean2"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "gsm8k[canary/cpu]: same: 0 broken, 0 fixed of 200 (McNemar exact two-sided p=1 ≥ α=0.05)",
        "release: not worse (0 worse, 0 not comparable, 0 better, 1 same)",
    ]


def test_a_run_that_gets_a_few_questions_wrong_is_worse_with_the_broken_ids(runs):
    done = compare_cli(runs["clean1"], runs["faulty"])
    assert done.returncode == 1, done.stdout + done.stderr
    row, release = done.stdout.splitlines()
    assert matches(
        "gsm8k[canary/cpu]: worse: * broken, 0 fixed of 200 (McNemar exact two-sided p=* < α=0.05); first broken: *",
        row,
    ), row
    broken = int(row.split("worse: ")[1].split(" broken")[0])
    assert 4 <= broken <= 20  # about 5 % of 200, less the questions the canary already got wrong
    faulty = [json.loads(line) for line in next((runs["faulty"] / "samples").glob("gsm8k__*")).read_text().splitlines()]
    first = row.split("first broken: ")[1].split(", ")[0]
    assert next(s for s in faulty if str(s["id"]) == first)["output"] == "#### -1"
    assert release == "release: worse (1 worse, 0 not comparable, 0 better, 0 same)"


def test_the_baseline_option_fails_the_session_and_writes_the_comparison(tmp_path, engine, runs):
    # the = form: pytest takes a bare existing directory among its arguments into its rootdir guess
    run, run_dir = one_run(tmp_path, engine, "wrong-answers", 200, f"--harness-baseline={runs['clean1']}")
    assert run.returncode == 1
    assert f"baseline: {runs['clean1']}" in run.output and "release: worse (1 worse" in run.output
    comparison = json.loads((run_dir / "comparison.json").read_text())
    assert comparison["rows"][0]["verdict"] == "worse" and comparison["rows"][0]["details"]["fixed"] == []


def test_other_questions_are_not_comparable(tmp_path, engine, runs):
    _, other = one_run(tmp_path, engine, "none", 150)
    done = compare_cli(runs["clean1"], other)
    assert done.returncode == 2
    assert done.stdout.splitlines()[0] == (
        "gsm8k[canary/cpu]: not comparable: the questions differ (50 only in the baseline, 0 only in this run)"
    )


# -- rows without per-question samples, on written results ---------------------------------------------------------


def write_run(root: Path, *rows: dict) -> Path:
    root.mkdir(parents=True)
    (root / "results.json").write_text(json.dumps({"tests": list(rows)}))
    return root


def perf_row(throughput: float, spread: list[float], itl: float = 10.0) -> dict:
    return {
        "suite": "serving_perf",
        "case": "m/c",
        "verdict": "pass",
        "n": 600,
        "metrics": {"output_throughput": throughput, "itl_ms": itl},
        "details": {
            "workloads": {
                "saturating": {"gates": ["output_throughput"], "spread": {"output_throughput": spread}},
                "light": {"gates": ["itl_ms"], "spread": {"median_itl_ms": [9.5, 10.5]}},
            }
        },
    }


@pytest.mark.parametrize(
    "throughput, itl, verdict",
    [
        (1020.0, 10.2, "same"),
        (800.0, 10.0, "worse"),
        (1000.0, 12.0, "worse"),
        (960.0, 9.0, "same"),
        (1300.0, 10.0, "better"),
    ],
)
def test_serving_perf_is_judged_against_the_baselines_median_and_spread(tmp_path, throughput, itl, verdict):
    from harness.report.compare import Run, compare_runs

    base = write_run(tmp_path / "base", perf_row(1000.0, [950.0, 1100.0]))
    new = write_run(tmp_path / "new", perf_row(throughput, [throughput, throughput], itl))
    (row,) = compare_runs(Run.load(base), Run.load(new))
    assert row.verdict == verdict, row.line


def check_row(passed: bool, n: int = 32, verdict: str = "pass") -> dict:
    return {
        "suite": "logprob_prefill_cache_hit",
        "case": "m/c",
        "verdict": verdict,
        "n": n,
        "metrics": {"kl_div": 1e-3 if passed else 5e-2},
        "checks": [{"metric": "kl_div", "observed": 1e-3 if passed else 5e-2, "passed": passed}],
    }


@pytest.mark.parametrize(
    "new, verdict, line",
    [
        (check_row(True), "same", "logprob_prefill_cache_hit[m/c]: same: kl_div 0.001 → 0.001"),
        (check_row(False, verdict="fail"), "worse", "logprob_prefill_cache_hit[m/c]: worse: kl_div 0.001 → 0.05"),
        (
            check_row(True, n=16),
            "not comparable",
            "logprob_prefill_cache_hit[m/c]: not comparable: n differs (32 in the baseline, 16 now)",
        ),
        (
            {**check_row(True), "verdict": "error", "metrics": {}},
            "not comparable",
            "logprob_prefill_cache_hit[m/c]: not comparable: this run's row is error with no metrics",
        ),
    ],
)
def test_other_rows_compare_their_checks(tmp_path, new, verdict, line):
    from harness.report.compare import Run, compare_runs, release_verdict

    rows = compare_runs(
        Run.load(write_run(tmp_path / "base", check_row(True))), Run.load(write_run(tmp_path / "new", new))
    )
    assert (rows[0].verdict, rows[0].line) == (verdict, line)
    assert release_verdict(rows)[1] == {"same": 0, "worse": 1, "not comparable": 2}[verdict]


# -- cross-config agreement within one run ---------------------------------------------------------------------------

CROSS = """\
models:
  tiny:
    path: {model}
    engine: hf
    dtype: float32
    reference_config: [cfg]
    options:
      gsm8k: {{source: data, num_shots: 1, max_new_tokens: 24}}
    configs:
      cfg:
        args: []
        suites: [gsm8k]
      cfg16:
        args: [--page-size, "16"]
        suites: [gsm8k]
      short:
        args: []
        suites: [gsm8k]
        options:
          gsm8k: {{max_new_tokens: 3}}
references:
  gsm8k:
    tiny: [{{metric: accuracy, min: 0.0, provenance: random weights in a test}}]
"""


def test_every_config_is_held_to_the_reference_config_question_by_question(tmp_path, tiny_model):
    from inner_run_support import write_project

    write_project(tmp_path, tiny_model)
    (tmp_path / "thresholds.yaml").write_text(CROSS.format(model=tiny_model))
    run = run_inner(tmp_path, "-k", "gsm8k")
    assert_clean(run)
    lines = run.output[run.output.index("cross-config agreement:") :].splitlines()
    assert lines[1] == (
        "gsm8k[tiny/cfg16 vs cfg]: same: 0 broken, 0 fixed of 40 (McNemar exact two-sided p=1 ≥ "
        "α=0.05); answers alike 40/40"
    )  # page size 16 answers as page size 1
    assert lines[2].startswith("gsm8k[tiny/short vs cfg]: ") and "answers alike 40/40" not in lines[2], lines[2]
    agreement = json.loads(next((tmp_path / "reports").glob("*/agreement.json")).read_text())
    assert [r["case"] for r in agreement["rows"]] == ["tiny/cfg16 vs cfg", "tiny/short vs cfg"]
    assert agreement["rows"][0]["details"]["answer_agreement"] == 1.0
