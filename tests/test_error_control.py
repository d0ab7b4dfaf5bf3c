"""Run-level error control (harness.verdict.error_control): which gates share α, the level each gets, and what a run
prints, pinned on real runs of the HF engine (pytester-style inner pytest, tests/inner_run_support.py's project)."""

from __future__ import annotations

import math

import pytest
from inner_run_support import assert_clean, run_inner, write_project

from harness.verdict.checks import StatisticalReference, check_statistical, one_sided_p
from harness.verdict.error_control import Family

# gsm8k's reference puts the tiny random model's accuracy 0.000 at z = -1.79 (p = 0.037): a fail at α 0.05,
# a pass at 0.05 shared by the run's two statistical gates (0.025 each).
REFERENCES = """\
references:
  gsm8k:
    tiny: [{metric: accuracy, value: 0.12, n: 40, sigma: 0.3, provenance: set so that 0 is p 0.037}]
  logprob_prefill_cache_hit:
    tiny:
      - {metric: kl_div, max: 1.0e-6, provenance: fp32 CPU engine}
      - {metric: hit_shift, alpha: 0.01, min_effect: 0.005, provenance: the canary's}
  prefix_branching:
    tiny: [{metric: branch_mismatches, max: 0, provenance: exact cache semantics}]
"""


def project(tmp_path, tiny_model, scope: str | None):
    write_project(tmp_path, tiny_model)
    text = (tmp_path / "thresholds.yaml").read_text()
    text = text[: text.index("references:")] + REFERENCES
    if scope:
        text += f"error_control: {{scope: {scope}, alpha: 0.05}}\n"
    (tmp_path / "thresholds.yaml").write_text(text)
    return tmp_path


def test_the_floor_test_fails_exactly_when_its_p_value_is_below_alpha():
    ref = StatisticalReference(0.12, 40, 0.3)
    p = one_sided_p(0.0, ref, 40)
    assert math.isclose(p, 0.0369, abs_tol=5e-4)
    for alpha in (p * 0.99, p * 1.01):
        verdict = check_statistical("t", "accuracy", 0.0, StatisticalReference(0.12, 40, 0.3, alpha=alpha), 40)
        assert verdict.passed == (p >= alpha) and verdict.p_value == p
    lower = StatisticalReference(10.0, 40, 2.0, higher_is_better=False)
    assert one_sided_p(11.0, lower, 40) == pytest.approx(1 - one_sided_p(9.0, lower, 40))


def test_a_family_splits_alpha_by_bonferroni_and_states_the_run_wide_rate():
    gates = (("gsm8k[m/a] accuracy", 0.05), ("gsm8k[m/b] accuracy", 0.05), ("x[m/a] hit_shift", 0.01))
    run = Family("run", 0.05, gates)
    assert run.level(0.01) == run.level(0.05) == pytest.approx(0.05 / 3)
    assert run.describe() == (
        "error control: per run: family-wise α 0.05 shared by 3 statistical gates (Bonferroni: 0.0167 each)"
    )
    gate = Family("gate", 0.05, gates)
    assert gate.level(0.01) == 0.01
    assert gate.family_alpha() == pytest.approx((0.11, 1 - 0.95 * 0.95 * 0.99))
    assert gate.describe() == (
        "error control: per gate: 3 statistical gates, each at its own α (0.05 ×2, 0.01 ×1); "
        "a clean run fails at least one with probability up to 10.7% (independent gates; "
        "≤ 11.0% in any case); error_control: {scope: run} bounds it"
    )
    thirty = Family("gate", 0.05, tuple((str(i), 0.05) for i in range(30)))
    assert round(thirty.family_alpha()[1], 2) == 0.79  # the 79 %


@pytest.mark.parametrize("scope", [None, "run"])
def test_a_run_judges_its_gates_at_the_scope_thresholds_yaml_chose(tmp_path, tiny_model, scope):
    run = run_inner(project(tmp_path, tiny_model, scope), "-k", "gsm8k or logprob")
    gsm8k = run.rows()["gsm8k"]["checks"][0]
    assert math.isclose(gsm8k["p_value"], 0.0369, abs_tol=5e-4)
    if scope is None:
        head = "error control: per gate: 2 statistical gates, each at its own α (0.05 ×1, 0.01 ×1)"
        assert run.rows()["gsm8k"]["verdict"] == "fail" and gsm8k["alpha"] == 0.05
        assert "gsm8k[tiny/cfg]: accuracy 0.000 < floor 0.010 (ref 0.120, n=40, σ=0.3, α=0.05, θ=0.167)" in run.output
    else:
        head = "error control: per run: family-wise α 0.05 shared by 2 statistical gates (Bonferroni: 0.025 each)"
        assert run.rows()["gsm8k"]["verdict"] == "pass" and gsm8k["alpha"] == 0.025
        assert (
            "gsm8k[tiny/cfg]: accuracy 0.000 ≥ floor -0.011 (ref 0.120, n=40, σ=0.3, α=0.05/2=0.025, θ=0.188)"
            in run.output
        )
        shift = next(c for c in run.rows()["logprob_prefill_cache_hit"]["checks"] if c["metric"] == "hit_shift")
        assert shift["alpha"] == 0.025 and "α=0.05/2=0.025, n=4" in shift["message"]
    assert head in run.output and head in run.summary
    assert run.results["run"]["error_control"]["gates"] == [
        "gsm8k[tiny/cfg] accuracy",
        "logprob_prefill_cache_hit[tiny/cfg] hit_shift",
    ]
    assert_clean(run)


def test_deselected_tests_leave_the_family_and_shards_share_one(tmp_path, tiny_model):
    root = project(tmp_path, tiny_model, "run")
    only = run_inner(root, "-k", "gsm8k")
    assert only.results["run"]["error_control"]["size"] == 1
    shard = run_inner(root, "-k", "gsm8k or logprob", "--harness-shard", "0/2")
    assert shard.results["run"]["error_control"]["size"] == 2  # both tests' gates, though one shard runs one server


def test_a_misspelt_scope_names_the_key_and_the_choices(tmp_path, tiny_model):
    root = project(tmp_path, tiny_model, "runs")
    run = run_inner(root, "--collect-only")
    assert (
        "thresholds.yaml: error_control.scope: unknown scope 'runs' (did you mean 'run'?); valid choices: gate, run"
        in run.output
    ), run.output[-2000:]
