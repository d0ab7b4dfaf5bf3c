"""One check's verdict: the object that owns whether an observed value passed and the line that explains it.

`check_statistical` (a floor or ceiling from a measured reference), `check_bound` (a plain min/max, or a ratio of a
measured value), `check_paired` (McNemar against a baseline) and `check_shift` (a shift that should be 0) each
return a `Verdict`; `check_reference` picks the right one for a thresholds.yaml entry (harness.config), at the
level the run's error control gives it. The numbers come from harness.verdict.statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist

from harness.config.metrics import DEFAULT_ALPHA, DEFAULT_BETA, METRICS, metric_info
from harness.config.schema import ReferenceEntry
from harness.errors import NoReferenceError
from harness.verdict.statistics import (
    SHIFT_CONFIDENCE,
    WILSON_CONFIDENCE,
    McNemar,
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


class ThresholdFailure(AssertionError):
    """A verdict that failed; an AssertionError so pytest reports it as a test failure."""


@dataclass(slots=True)
class Verdict:
    """The outcome of one check, with everything needed to explain it.

    `bound` is what the observed value was compared with: a floor or ceiling (`kind` "floor" /
    "ceiling"), a plain "min" / "max", or α for a paired test ("paired"). `floor` is an alias.
    """

    test: str
    metric: str
    observed: float
    passed: bool
    kind: str
    bound: float
    source: str = ""
    reference: float | None = None
    n: int | None = None
    n_ref: int | None = None
    sigma: float | None = None
    alpha: float | None = None
    beta: float | None = None
    theta: float | None = None
    wilson: tuple[float, float] | None = None
    mcnemar: McNemar | None = None
    shift: ShiftResult | None = None
    detail: str = ""
    warnings: list[str] = field(default_factory=list)
    p_value: float | None = None  # the one-sided p of a floor/ceiling test, a shift test's p
    run_alpha: tuple[float, int] | None = (
        None  # (family-wise α, gates) when α is the run's share (harness.verdict.error_control)
    )

    def _alpha_text(self) -> str:
        if self.run_alpha is None:
            return f"α={self.alpha:g}"
        family, gates = self.run_alpha
        return f"α={family:g}/{gates}={self.alpha:.3g}"

    @property
    def floor(self) -> float:
        return self.bound

    def _fmt(self, x: float) -> str:
        return format(x, METRICS[self.metric].fmt if self.metric in METRICS else ".4g")

    def message(self) -> str:
        """One line: observed, comparison, bound, how it was derived, and the YAML entry it came from."""
        where = f" — {self.source}" if self.source else ""
        if self.kind == "paired":
            return self._paired_message() + where
        if self.kind == "shift":
            return self._shift_message() + where
        ok_op, bad_op = ("≥", "<") if self.kind in ("floor", "min") else ("≤", ">")
        op = ok_op if self.passed else bad_op
        head = f"{self.test}: {self.metric} {self._fmt(self.observed)} {op} {self.kind} {self._fmt(self.bound)}"
        if self.kind in ("floor", "ceiling"):
            n_text = f"n={self.n}" if self.n == self.n_ref else f"n={self.n} (ref n={self.n_ref})"
            head += (
                f" (ref {self._fmt(self.reference)}, {n_text}, σ={self.sigma:g}, {self._alpha_text()},"
                f" θ={self._fmt(self.theta)})"
            )
        return head + self.detail + where

    def _paired_message(self) -> str:
        m = self.mcnemar
        counts = f"{m.regressions} lost, {m.improvements} gained of {m.total} paired samples"
        if self.passed:
            return (
                f"{self.test}: {self.metric} no significant regression vs baseline ({counts};"
                f" McNemar exact one-sided p={m.p_value:.3g} ≥ α={self.bound:g})"
            )
        return (
            f"{self.test}: {self.metric} regressed vs baseline ({counts};"
            f" McNemar exact one-sided p={m.p_value:.3g} < α={self.bound:g})"
        )

    def _shift_message(self) -> str:
        r, f = self.shift, self._fmt
        verdict = "no shift" if self.passed else "shifted"
        name = (
            f"McNemar exact two-sided ({r.discordant[0]} up, {r.discordant[1]} down)" if r.discordant else "sign-flip"
        )
        test = f"{name} p={r.p_value:.2g} {'≥' if r.p_value >= self.alpha else '<'} {self._alpha_text()}, n={r.n}"
        return (
            f"{self.test}: {self.metric} {f(r.mean)} ({SHIFT_CONFIDENCE:.0%} CI [{f(r.low)}, {f(r.high)}]): {verdict} "
            f"({test}; detects |shift| ≥ {f(r.detectable)} with power {1 - self.beta:.0%})"
        )

    def report(self) -> str:
        """The message plus the Wilson interval, the detectable drop and every warning, one per line."""
        lines = [self.message()]
        if self.wilson is not None:
            low, high = self.wilson
            lines.append(f"  observed {self.metric} {WILSON_CONFIDENCE:.0%} Wilson interval: [{low:.3f}, {high:.3f}]")
        if self.theta is not None and self.kind != "shift":
            lines.append(f"  this test detects drops of {self._fmt(self.theta)} or more with power {1 - self.beta:.0%}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def assert_passing(self) -> None:
        if not self.passed:
            raise ThresholdFailure(self.report())


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


@dataclass(frozen=True, slots=True)
class ShiftResult:
    mean: float
    low: float  # SHIFT_CONFIDENCE normal interval of the mean
    high: float
    p_value: float
    n: int
    detectable: float  # |shift| found with probability 1 − β: max(min_effect, (z_{1−α/2} + z_{1−β})·sd/√n)
    discordant: tuple[int, int] | None = None  # (+1s, −1s) when every unit is −1, 0 or 1: the test is McNemar's
    within_min_effect: bool = False  # |mean| ≤ the test's min_effect: a pass whatever the p-value


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
    match, observed: float, n: int | None = None, units: list[float] | None = None, family=None
) -> Verdict:
    """Judge an observed value (over n samples; a shift from its per-unit values) against the entry a
    harness.config.thresholds.ReferenceMatch chose; a
    statistical entry at its `family`'s level (harness.verdict.error_control.Family), or its own α without one."""
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
            " record one with --harness-no-reference, then write it with --harness-update-thresholds"
        )
    if isinstance(criterion, StatisticalReference):
        return _in_family(
            check_statistical(match.test_id, entry.metric, observed, criterion, n, where), family, run_share
        )
    return check_bound(match.test_id, entry.metric, observed, criterion, n, where)


def _in_family(verdict: Verdict, family, run_share: bool) -> Verdict:
    if run_share:
        verdict.run_alpha = (family.alpha, family.size)
    return verdict
