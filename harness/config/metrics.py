"""The one registry of metric names thresholds.yaml can gate: each metric's direction, whether it is a proportion, and
how it prints. The loader checks every reference's `metric` against it; verdicts and the release comparison read
direction and format from it, so a metric's direction is written once."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import unknown_choice

# The defaults a thresholds.yaml entry gets when it sets no alpha / beta (harness.verdict.statistics explains them).
DEFAULT_ALPHA = 0.05
DEFAULT_BETA = 0.2


@dataclass(frozen=True, slots=True)
class Metric:
    """How a metric reads: its direction, whether it is a proportion, how to print it."""

    name: str
    higher_is_better: bool
    proportion: bool
    fmt: str
    shift: bool = False  # judged by `check_shift` on per-unit values: 0 expected, either sign is a failure


# The one registry of metric names; thresholds.yaml entries are validated against it.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", True, True, ".3f"),
        Metric("accuracy_strict", True, True, ".3f"),
        Metric("invalid_rate", False, True, ".3f"),
        Metric("kl_div", False, False, ".1e"),
        Metric("control_kl_div", False, False, ".1e"),
        Metric("hit_shift", False, False, ".1e", shift=True),
        Metric("hit_rate", True, True, ".3f"),
        Metric("accept_length", True, False, ".2f"),
        Metric("mean_logprob_diff", False, False, ".1e"),
        Metric("max_logprob_diff", False, False, ".1e"),
        Metric("prompt_logprob_max_diff", False, False, ".1e"),
        Metric("prompt_logprob_mean_diff", False, False, ".1e"),
        Metric("output_logprob_max_diff", False, False, ".1e"),
        Metric("output_logprob_mean_diff", False, False, ".1e"),
        Metric("branch_mismatches", False, False, ".0f"),
        Metric("greedy_agreement", True, True, ".3f"),
        Metric("gsm8k_agreement", True, True, ".3f"),
        Metric("unparsed_rate", False, True, ".3f"),
        Metric("answer_agreement", True, True, ".3f"),
        # per question: correct under test − correct on the reference (−1, 0, 1); the sign-flip test on such
        # units is the exact two-sided McNemar test
        Metric("accuracy_gap", False, False, "+.3f", shift=True),
        Metric("reference_accuracy", True, True, ".3f"),
        Metric("false_hits", False, False, ".0f"),
        Metric("output_throughput", True, False, ".1f"),
        Metric("ttft_ms", False, False, ".1f"),
        Metric("itl_ms", False, False, ".2f"),
    )
}


def metric_info(name: str) -> Metric:
    """The registered metric called `name`; unknown names fail with the valid choices."""
    if name not in METRICS:
        raise unknown_choice("metric", name, METRICS)
    return METRICS[name]
