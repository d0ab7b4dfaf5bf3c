"""A limited run (n questions of the reference's n_ref) is judged exactly on what the reference knows about those
questions (harness.verdict.subset): paired with the reference run's per-question records where they cover the
subset, else an exact one-sided binomial at the reference's accuracy. Issue 35, item 3: the normal floor failed a
healthy canary VLM at `--harness-limit 30` (28 of 30 right, floor 0.935)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.config.per_question import PerQuestion, read_per_question, write_per_question
from harness.config.thresholds import load_thresholds
from harness.errors import ConfigError
from harness.verdict.checks import StatisticalReference, check_reference, check_statistical
from harness.verdict.statistics import binomial_cdf

REPO = Path(__file__).resolve().parents[1]
SOURCE = "thresholds.yaml references.mmmu.canary-vlm[0]"


def canary_vlm_match():
    return load_thresholds(REPO / "thresholds.yaml").reference_for("mmmu", "canary-vlm", "cpu", "accuracy")


def test_binomial_cdf_is_exact():
    for n, p in [(1, 0.3), (7, 0.5), (30, 0.979), (12, 0.01)]:
        for k in range(-1, n + 1):
            exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(0, k + 1)))
            assert binomial_cdf(k, n, p) == pytest.approx(exact, rel=1e-12, abs=1e-300)


def test_the_normal_floor_failed_28_of_30_and_the_exact_binomial_passes_it():
    reference = StatisticalReference(0.979, 900, 0.143)
    normal = check_statistical("mmmu[canary-vlm/cpu]", "accuracy", 28 / 30, reference, n=30)
    assert not normal.passed and normal.bound == pytest.approx(0.9353, abs=1e-4)  # the false failure
    verdict = check_reference(canary_vlm_match(), 28 / 30, n=30)  # no answers given: binomial
    assert verdict.passed
    assert verdict.message() == (
        "mmmu[canary-vlm/cpu]: accuracy 0.933 ≥ floor 0.933 (limited: 30 of 900 questions; exact binomial at ref"
        f" 0.979: P(≤ 28 right)=0.13 ≥ α=0.05) — {SOURCE}"
    )
    failed = check_reference(canary_vlm_match(), 27 / 30, n=30)
    assert not failed.passed and failed.p_value == pytest.approx(binomial_cdf(27, 30, 0.979))
    assert "P(≤ 27 right)=0.025 < α=0.05" in failed.message()


def test_a_subset_the_records_cover_is_judged_paired():
    match = canary_vlm_match()
    records = read_per_question(REPO / match.entry.per_question)
    subset = sorted(records.answers)[:40]
    same = {q: records.answers[q] for q in subset}
    verdict = check_reference(match, sum(same.values()) / 40, n=40, subset=(same, records))
    assert verdict.passed and verdict.kind == "paired"
    assert "(limited: 40 of 900 questions; paired with the reference run on the same 40: 0 lost, 0 gained" in (
        verdict.message()
    )
    lost = dict(same)
    for q in [q for q in subset if same[q]][:5]:
        lost[q] = False
    failed = check_reference(match, sum(lost.values()) / 40, n=40, subset=(lost, records))
    assert not failed.passed
    assert "5 lost, 0 gained, exact McNemar p=0.031 < α=0.05) — " in failed.message()


def test_questions_outside_the_records_fall_back_to_the_binomial_and_say_so():
    records = PerQuestion({"q1": True, "q2": True}, "", "refs.json")
    answers = {"q1": True, "q3": True}
    verdict = check_reference(canary_vlm_match(), 1.0, n=2, subset=(answers, records))
    assert "(limited: 2 of 900 questions; 1 not in the reference's records (refs.json), so; exact binomial" in (
        verdict.message()
    )


def test_a_full_run_keeps_the_floor():
    verdict = check_reference(canary_vlm_match(), 0.979, n=900)
    assert verdict.judged == "" and verdict.kind == "floor" and "θ=" in verdict.message()


def test_per_question_files_round_trip_and_bad_ones_are_named(tmp_path):
    path = tmp_path / "refs.json"
    write_per_question(path, {"suite": "mmmu"}, {"b": False, "a": True}, "run x")
    records = read_per_question(path)
    assert records.answers == {"a": True, "b": False} and records.provenance == "run x"
    path.write_text('{"correct": ["a"], "wrong": ["a"]}')
    with pytest.raises(ConfigError, match="ids both right and wrong: a"):
        read_per_question(path, "thresholds.yaml: references.mmmu.m[0].per_question")
    path.write_text("{")
    with pytest.raises(ConfigError, match=r"^thresholds.yaml: references.mmmu.m\[0\].per_question: per_question file"):
        read_per_question(path, "thresholds.yaml: references.mmmu.m[0].per_question")
