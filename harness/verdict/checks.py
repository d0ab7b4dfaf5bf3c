"""One check's verdict: the object that owns whether an observed value passed and the line that explains it.

`check_statistical` (a floor or ceiling from a measured reference), `check_bound` (a plain min/max, or a ratio of a
measured value), `check_paired` (McNemar against a baseline) and `check_shift` (a shift that should be 0) each
return a `Verdict`; `check_reference` picks the right one for a thresholds.yaml entry (harness.config), at the
level the run's error control gives it. The numbers come from harness.verdict.statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

from harness.config.metrics import DEFAULT_ALPHA, DEFAULT_BETA, metric_info
from harness.config.schema import ReferenceEntry
from harness.config.templates import update_command
from harness.errors import NoReferenceError
from harness.verdict.statistics import (
    SHIFT_CONFIDENCE,
    compute_theta,
    compute_threshold,
    mcnemar_one_sided,
    probability,
    require_positive_n,
    sign_flip_p_value,
    standard_error,
    wilson_interval,
    z_quantile,
)
from harness.verdict.subset import check_subset, is_limited
from harness.verdict.verdict import ShiftResult, Verdict


@dataclass(frozen=True, slots=True)
class StatisticalReference:
    """A measured reference: the value, the n it was measured on, the per-sample σ, the test's α and β."""

    value: float
    n: int
    sigma: float
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    higher_is_better: bool = True


@dataclass(frozen=True, slots=True)
class Bound:
    """A plain limit: `upper` means observed ≤ limit (a max), otherwise observed ≥ limit (a min).

    `ratio` and `value` are set when the limit is a fraction of a measured value (e.g. 95 % of a
    reference accept length, as TensorRT-LLM does), so the message can say where it came from.
    """

    limit: float
    upper: bool
    ratio: float | None = None
    value: float | None = None
    n: int | None = None


def check_statistical(
    test: str, metric: str, observed: float, reference: StatisticalReference, n: int | None = None, source: str = ""
) -> Verdict:
    """Compare an observed score over n samples with a measured reference (one-sided test)."""
    info = metric_info(metric)
    n = reference.n if n is None else n
    wilson = None
    if info.proportion:
        wilson = wilson_interval(observed, n)
    ref = reference
    bound = compute_threshold(ref.value, ref.sigma, ref.n, ref.alpha, ref.higher_is_better, n)
    theta = compute_theta(reference.sigma, reference.n, reference.alpha, reference.beta, n)
    passed = observed >= bound if reference.higher_is_better else observed <= bound
    p_value = one_sided_p(observed, reference, n)
    warnings = []
    if n != reference.n:
        advice = (
            "run the reference's sample set to compare like with like"
            if n < reference.n
            else f"re-measure the reference on n={n} to tighten the floor (--harness-update-thresholds)"
        )
        warnings.append(
            f"n={n} differs from the reference's n={reference.n}: floor and θ use σ·√(1/n_ref + 1/n) and catch"
            f" changes of θ={format(theta, info.fmt)} or more; {advice}"
        )
    return Verdict(
        test,
        metric,
        observed,
        passed,
        "floor" if reference.higher_is_better else "ceiling",
        bound,
        source,
        reference=reference.value,
        n=n,
        n_ref=reference.n,
        sigma=reference.sigma,
        alpha=reference.alpha,
        beta=reference.beta,
        theta=theta,
        wilson=wilson,
        warnings=warnings,
        p_value=p_value,
    )


def one_sided_p(observed: float, reference: StatisticalReference, n: int) -> float:
    """P(a clean run scores this badly or worse): Φ((observed − ref)/SE), mirrored when lower is better; the floor
    test fails exactly when this is below α."""
    se = standard_error(reference.sigma, reference.n, n)
    if se == 0:  # σ 0: any move in the wrong direction is certain
        worse = observed < reference.value if reference.higher_is_better else observed > reference.value
        return 0.0 if worse else 1.0
    z = (observed - reference.value) / se
    return NormalDist().cdf(z if reference.higher_is_better else -z)


def check_bound(
    test: str, metric: str, observed: float, bound: Bound, n: int | None = None, source: str = ""
) -> Verdict:
    """Compare an observed value with a plain max or min (inclusive)."""
    info = metric_info(metric)
    passed = observed <= bound.limit if bound.upper else observed >= bound.limit
    detail = ""
    if bound.ratio is not None:
        ref_n = f", n={bound.n}" if bound.n is not None else ""
        detail = f" ({bound.ratio:g} × ref {format(bound.value, info.fmt)}{ref_n})"
    wilson = wilson_interval(observed, n) if info.proportion and n else None
    return Verdict(
        test,
        metric,
        observed,
        passed,
        "max" if bound.upper else "min",
        bound.limit,
        source,
        reference=bound.value,
        n=n,
        n_ref=bound.n,
        wilson=wilson,
        detail=detail,
    )


def check_paired(
    test: str,
    metric: str,
    baseline: Mapping[str, bool] | Sequence[bool],
    candidate: Mapping[str, bool] | Sequence[bool],
    alpha: float = DEFAULT_ALPHA,
    source: str = "",
) -> Verdict:
    """Release gate: fail when the candidate is significantly worse than the baseline on the same items."""
    result = mcnemar_one_sided(baseline, candidate)
    if result.total == 0:
        raise ValueError(f"{test}: no paired samples to compare with the baseline")
    observed = sum(map(bool, candidate.values() if isinstance(candidate, Mapping) else candidate)) / result.total
    return Verdict(
        test,
        metric,
        observed,
        result.p_value >= probability(alpha, "alpha"),
        "paired",
        alpha,
        source,
        n=result.total,
        alpha=alpha,
        mcnemar=result,
    )


@dataclass(frozen=True, slots=True)
class ShiftTest:
    """A shift that should be 0: fail when the mean of the per-unit values differs from 0 at level α (two-sided)
    and by more than `min_effect` (a floor below which a difference is numerics, not a bug)."""

    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    min_effect: float = 0.0


def shift_statistics(values: Sequence[float], test: ShiftTest) -> ShiftResult:
    n = len(values)
    require_positive_n(n, "n")
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.inf
    se = sd / math.sqrt(n)
    z_ci = z_quantile(1 - (1 - SHIFT_CONFIDENCE) / 2)
    z_sum = z_quantile(1 - probability(test.alpha, "alpha") / 2) + z_quantile(1 - probability(test.beta, "beta"))
    paired = (
        (sum(v == 1 for v in values), sum(v == -1 for v in values)) if all(v in (-1, 0, 1) for v in values) else None
    )
    return ShiftResult(
        mean,
        mean - z_ci * se,
        mean + z_ci * se,
        sign_flip_p_value(values),
        n,
        max(test.min_effect, z_sum * se),
        paired,
        abs(mean) <= test.min_effect,
    )


def check_shift(test: str, metric: str, values: Sequence[float], spec: ShiftTest, source: str = "") -> Verdict:
    """Judge a shift that should be 0 from its per-unit values (e.g. one per prompt)."""
    result = shift_statistics(values, spec)
    passed = result.p_value >= spec.alpha or result.within_min_effect
    return Verdict(
        test,
        metric,
        result.mean,
        passed,
        "shift",
        spec.alpha,
        source,
        reference=0.0,
        n=result.n,
        alpha=spec.alpha,
        beta=spec.beta,
        theta=result.detectable,
        shift=result,
        p_value=result.p_value,
    )


def criterion_of(entry: ReferenceEntry) -> StatisticalReference | Bound | ShiftTest:
    """What a thresholds.yaml entry compares an observed value with."""
    if entry.kind == "shift":
        alpha, beta = (
            DEFAULT_ALPHA if entry.alpha is None else entry.alpha,
            DEFAULT_BETA if entry.beta is None else entry.beta,
        )
        return ShiftTest(alpha, beta, entry.min_effect or 0.0)
    if entry.kind == "statistical":
        direction = metric_info(entry.metric).higher_is_better
        return StatisticalReference(
            entry.value,
            entry.n,
            entry.sigma,
            DEFAULT_ALPHA if entry.alpha is None else entry.alpha,
            DEFAULT_BETA if entry.beta is None else entry.beta,
            direction if entry.higher_is_better is None else entry.higher_is_better,
        )
    if entry.kind in ("max", "min"):
        return Bound(getattr(entry, entry.kind), upper=entry.kind == "max", value=entry.value, n=entry.n)
    ratio = getattr(entry, entry.kind)
    return Bound(ratio * entry.value, upper=entry.kind == "max_ratio", ratio=ratio, value=entry.value, n=entry.n)


def check_reference(
    match, observed: float, n: int | None = None, units: list[float] | None = None, family=None, subset=None
) -> Verdict:
    """Judge an observed value (over n samples; a shift from its per-unit values) against the entry a
    harness.config.thresholds.ReferenceMatch chose; a
    statistical entry at its `family`'s level (harness.verdict.error_control.Family), or its own α without one.
    A proportion on fewer questions than the reference's is judged exactly (harness.verdict.subset); `subset` is
    (the run's answers by question id, the entry's PerQuestion records or None)."""
    entry, where = match.entry, f"{match.source} {match.path}"
    criterion = criterion_of(entry) if not entry.pending else None
    run_share = (
        family is not None
        and family.scope == "run"
        and criterion is not None
        and entry.kind in ("statistical", "shift")
    )
    if run_share:
        criterion = replace(criterion, alpha=family.level(criterion.alpha))
    if entry.kind == "shift":
        if not units:
            raise NoReferenceError(
                f"{where}: {entry.metric} for {match.test_id} needs its per-unit values; the eval gave none"
            )
        return _in_family(check_shift(match.test_id, entry.metric, units, criterion, where), family, run_share)
    if entry.pending:
        raise NoReferenceError(
            f"{where}: {entry.metric} for {match.test_id} has no measured value yet ({entry.provenance});"
            f" measure and write it from a full run: {update_command(match.suite, match.model, match.config)}"
        )
    if isinstance(criterion, StatisticalReference):
        verdict = _in_family(
            check_statistical(match.test_id, entry.metric, observed, criterion, n, where), family, run_share
        )
        if is_limited(entry.metric, verdict.n, verdict.n_ref):
            answers, records = subset or (None, None)
            return check_subset(verdict, answers, records, criterion.higher_is_better)
        return verdict
    return check_bound(match.test_id, entry.metric, observed, criterion, n, where)


def _in_family(verdict: Verdict, family, run_share: bool) -> Verdict:
    if run_share:
        verdict.run_alpha = (family.alpha, family.size)
    return verdict
