"""Exact values of the threshold statistics, and the verdict messages users read."""

from __future__ import annotations

import math

import pytest

from harness.config.metrics import metric_info
from harness.errors import ConfigError
from harness.verdict.checks import (
    Bound,
    StatisticalReference,
    check_bound,
    check_paired,
    check_statistical,
)
from harness.verdict.statistics import (
    binomial_upper_tail,
    compute_theta,
    compute_threshold,
    floor_offset,
    mcnemar_one_sided,
    standard_error,
    wilson_interval,
    z_quantile,
)
from harness.verdict.verdict import ThresholdFailure

SOURCE = "thresholds.yaml references.gsm8k.qwen3-next-80b[0]"


def test_normal_quantiles_match_the_tables():
    assert z_quantile(0.95) == pytest.approx(1.6448536269514722, abs=1e-12)
    assert z_quantile(0.80) == pytest.approx(0.8416212335729143, abs=1e-12)


def test_full_gsm8k_worst_case_sigma_floor_offset_is_3_2_points():
    # 1.6448536 * 0.5 * sqrt(2 / 1319)
    assert floor_offset(0.5, 1319, 0.05) == pytest.approx(0.0320250533, abs=1e-10)
    assert compute_threshold(0.935, 0.5, 1319) == pytest.approx(0.935 - 0.0320250533, abs=1e-10)


def test_full_gsm8k_detectable_drop_is_4_8_points():
    # (1.6448536 + 0.8416212) * 0.5 * sqrt(2 / 1319)
    assert compute_theta(0.5, 1319, 0.05, 0.2) == pytest.approx(0.0484112924, abs=1e-10)


@pytest.mark.parametrize(
    ("n", "offset_points", "theta_points"),
    [(200, 8.22, 12.43), (900, 3.88, 5.86), (4096, 1.82, 2.75), (2700, 2.24, 3.38)],
)
def test_tensorrt_llm_table_is_reproduced(n, offset_points, theta_points):
    assert round(floor_offset(0.5, n) * 100, 2) == offset_points
    assert round(compute_theta(0.5, n) * 100, 2) == theta_points


def test_lower_is_better_gives_a_ceiling_above_the_reference():
    assert compute_threshold(0.01, 0.1, 1319, higher_is_better=False) == pytest.approx(0.01 + 0.00640501066, abs=1e-10)


def test_different_run_size_combines_both_variances():
    assert standard_error(0.5, 1319) == pytest.approx(math.sqrt(2 * 0.25 / 1319), abs=1e-15)
    assert standard_error(0.5, 200, 1319) == pytest.approx(0.5 * math.sqrt(1 / 200 + 1 / 1319), abs=1e-15)


def test_zero_sigma_puts_the_floor_on_the_reference():
    assert compute_threshold(1.0, 0.0, 10) == 1.0
    assert compute_theta(0.0, 10) == 0.0


@pytest.mark.parametrize(
    ("p_hat", "low", "high"),
    [(0.0, 0.0, 0.2775327999), (1.0, 0.7224672001, 1.0), (0.7, 0.3967781475, 0.8922087326)],
)
def test_wilson_interval_for_ten_samples(p_hat, low, high):
    got_low, got_high = wilson_interval(p_hat, 10)
    assert got_low == pytest.approx(low, abs=1e-9)
    assert got_high == pytest.approx(high, abs=1e-9)


def test_wilson_rejects_values_outside_zero_one():
    with pytest.raises(ValueError, match=r"a proportion must lie in \[0, 1\], got 1.2"):
        wilson_interval(1.2, 10)


def test_binomial_tail_is_exact():
    assert binomial_upper_tail(8, 10) == 56 / 1024  # (C(10,8) + C(10,9) + C(10,10)) / 2^10
    assert binomial_upper_tail(0, 5) == 1.0
    assert binomial_upper_tail(6, 5) == 0.0


def test_mcnemar_counts_only_discordant_pairs():
    # 10 regressions, 2 improvements, 5 both right, 3 both wrong: P(X >= 10 | X ~ Bin(12, 1/2)) = 79 / 4096.
    baseline = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3
    candidate = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 3
    result = mcnemar_one_sided(baseline, candidate)
    assert (result.regressions, result.improvements, result.total) == (10, 2, 20)
    assert result.p_value == 79 / 4096


def test_mcnemar_aligns_mappings_by_sample_id():
    baseline = {"q1": True, "q2": True, "q3": False}
    candidate = {"q3": False, "q2": False, "q1": True}
    result = mcnemar_one_sided(baseline, candidate)
    assert (result.regressions, result.improvements, result.p_value) == (1, 0, 0.5)


def test_mcnemar_with_no_discordant_pairs_never_rejects():
    assert mcnemar_one_sided([True, False], [True, False]).p_value == 1.0


def test_mcnemar_refuses_different_samples():
    with pytest.raises(ValueError, match="1 only in the baseline, 1 only in the candidate"):
        mcnemar_one_sided({"q1": True, "q2": True}, {"q1": True, "q9": True})
    with pytest.raises(ValueError, match="baseline has 2 samples, candidate 1"):
        mcnemar_one_sided([True, True], [True])


def test_failing_floor_message_has_the_documented_format():
    verdict = check_statistical(
        "gsm8k[qwen3-next-80b/tp4-mtp]", "accuracy", 0.912, StatisticalReference(0.95, 1319, 0.5), source=SOURCE
    )
    assert not verdict.passed
    assert verdict.floor == pytest.approx(0.95 - 0.0320250533, abs=1e-10)
    assert verdict.message() == (
        "gsm8k[qwen3-next-80b/tp4-mtp]: accuracy 0.912 < floor 0.918 (ref 0.950, n=1319, σ=0.5, α=0.05, θ=0.048)"
        " — thresholds.yaml references.gsm8k.qwen3-next-80b[0]"
    )
    assert verdict.warnings == []
    assert verdict.wilson == pytest.approx(wilson_interval(0.912, 1319))


def test_passing_floor_message():
    verdict = check_statistical("gsm8k[canary/cpu]", "accuracy", 0.93, StatisticalReference(0.95, 1319, 0.5))
    assert verdict.passed
    assert verdict.message() == (
        "gsm8k[canary/cpu]: accuracy 0.930 ≥ floor 0.918 (ref 0.950, n=1319, σ=0.5, α=0.05, θ=0.048)"
    )


def test_lower_is_better_statistical_message():
    ref = StatisticalReference(0.01, 1319, 0.1, higher_is_better=False)
    verdict = check_statistical("gsm8k[canary/cpu]", "invalid_rate", 0.02, ref)
    assert not verdict.passed
    assert verdict.message() == (
        "gsm8k[canary/cpu]: invalid_rate 0.020 > ceiling 0.016 (ref 0.010, n=1319, σ=0.1, α=0.05, θ=0.010)"
    )


def test_a_different_run_size_warns_and_says_both_sizes():
    verdict = check_statistical("gsm8k[canary/cpu]", "accuracy", 0.9, StatisticalReference(0.935, 1319, 0.5), n=200)
    assert "n=200 (ref n=1319)" in verdict.message()
    assert verdict.theta == pytest.approx(compute_theta(0.5, 1319, n=200))
    assert verdict.warnings == [
        "n=200 differs from the reference's n=1319: floor and θ use σ·√(1/n_ref + 1/n) and catch changes of"
        " θ=0.094 or more; run the reference's sample set to compare like with like"
    ]
    assert "  warning: n=200 differs" in verdict.report()


def test_kl_bound_message():
    verdict = check_bound(
        "logprob_prefill_cache_hit[canary/tp1]",
        "kl_div",
        3.1e-3,
        Bound(1e-3, upper=True),
        source="thresholds.yaml references.logprob_prefill_cache_hit.canary[0]",
    )
    assert not verdict.passed
    assert verdict.message() == (
        "logprob_prefill_cache_hit[canary/tp1]: kl_div 3.1e-03 > max 1.0e-03"
        " — thresholds.yaml references.logprob_prefill_cache_hit.canary[0]"
    )
    assert check_bound("x", "kl_div", 2e-4, Bound(1e-3, upper=True)).message() == "x: kl_div 2.0e-04 ≤ max 1.0e-03"


def test_min_bounds_are_inclusive():
    verdict = check_bound("logprob_decode_cache_hit[canary/cpu]", "hit_rate", 0.5, Bound(0.5, upper=False), n=16)
    assert verdict.passed
    assert verdict.message() == "logprob_decode_cache_hit[canary/cpu]: hit_rate 0.500 ≥ min 0.500"
    assert verdict.wilson == pytest.approx(wilson_interval(0.5, 16))


def test_ratio_bound_says_where_the_limit_came_from():
    bound = Bound(0.95 * 1.94, upper=False, ratio=0.95, value=1.94, n=100)
    verdict = check_bound("spec_accept_length[canary/ngram]", "accept_length", 1.52, bound)
    assert verdict.message() == (
        "spec_accept_length[canary/ngram]: accept_length 1.52 < min 1.84 (0.95 × ref 1.94, n=100)"
    )


def test_paired_gate_fails_on_a_significant_regression():
    baseline = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3
    candidate = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 3
    verdict = check_paired("gsm8k[llama-3.1-8b/tp2]", "accuracy", baseline, candidate, source="baseline run 2024")
    assert not verdict.passed
    assert verdict.observed == pytest.approx(7 / 20)
    assert verdict.message() == (
        "gsm8k[llama-3.1-8b/tp2]: accuracy regressed vs baseline (10 lost, 2 gained of 20 paired samples;"
        " McNemar exact one-sided p=0.0193 < α=0.05) — baseline run 2024"
    )


def test_paired_gate_passes_when_changes_are_noise():
    verdict = check_paired("g", "accuracy", [True, True, False], [True, False, True])
    assert verdict.passed
    assert verdict.message() == (
        "g: accuracy no significant regression vs baseline (1 lost, 1 gained of 3 paired samples;"
        " McNemar exact one-sided p=0.75 ≥ α=0.05)"
    )


def test_assert_passing_raises_an_assertion_error_with_the_full_report():
    verdict = check_statistical("g", "accuracy", 0.5, StatisticalReference(0.95, 1319, 0.5))
    with pytest.raises(ThresholdFailure) as info:
        verdict.assert_passing()
    assert isinstance(info.value, AssertionError)
    assert str(info.value).splitlines()[0] == verdict.message()
    assert "95% Wilson interval: [0.473, 0.527]" in str(info.value)
    check_statistical("g", "accuracy", 0.99, StatisticalReference(0.95, 1319, 0.5)).assert_passing()


def test_unknown_metric_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown metric 'acuracy' \(did you mean 'accuracy'\?\)"):
        metric_info("acuracy")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: floor_offset(0.5, 100, alpha=0.0), "alpha must lie strictly between 0 and 1, got 0.0"),
        (lambda: compute_theta(0.5, 100, beta=1.0), "beta must lie strictly between 0 and 1, got 1.0"),
        (lambda: standard_error(0.5, 0), "n_ref must be a positive sample count, got 0"),
        (lambda: standard_error(-0.1, 10), "sigma must be >= 0, got -0.1"),
        (lambda: check_paired("t", "accuracy", [], []), "t: no paired samples to compare with the baseline"),
    ],
)
def test_bad_inputs_are_rejected_with_their_value(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message
