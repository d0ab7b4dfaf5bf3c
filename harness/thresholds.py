"""The only statistics in the harness: floors from a reference, bounds, Wilson intervals, paired McNemar.

Method (TensorRT-LLM's accuracy suite, `accuracy_core.py`): a run and its reference are two samples
of the same per-sample score distribution (standard deviation σ), so their difference has standard
error σ·√(1/n_ref + 1/n), which is √(2σ²/n) when both used n samples. A one-sided test at level α
puts the floor at ref − z_{1−α}·SE (the ceiling at ref + z_{1−α}·SE when lower is better), and the
drop that test catches with probability 1 − β is θ = (z_{1−α} + z_{1−β})·SE. θ is reported with every
verdict so everyone can see what a test is able to detect.

Metrics that are not sample means (KL divergence, accept length, hit rate) are checked against plain
bounds from thresholds.yaml and share the same `Verdict`. Release gating against a stored baseline
uses a paired test on the same questions (exact one-sided McNemar), which cancels question
difficulty and is far more sensitive than a floor. A shift that should be zero (the cache suites'
`hit_shift`: per prompt, hit-vs-replay minus control-vs-replay) gets a two-sided sign-flip test on its
per-unit values, which assumes only that they are symmetric about 0 when nothing is wrong, and prints
the shift it can detect. Only the standard library is used.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from harness.errors import unknown_choice

DEFAULT_ALPHA = 0.05
DEFAULT_BETA = 0.2
WILSON_CONFIDENCE = 0.95
SHIFT_CONFIDENCE = 0.95  # of the interval a shift verdict prints


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


def z_quantile(p: float) -> float:
    """The standard normal quantile Φ⁻¹(p)."""
    return NormalDist().inv_cdf(p)


def standard_error(sigma: float, n_ref: int, n: int | None = None) -> float:
    """SE of (run − reference): σ·√(1/n_ref + 1/n); equals √(2σ²/n) when n = n_ref."""
    _require_positive_n(n_ref, "n_ref")
    n = n_ref if n is None else n
    _require_positive_n(n, "n")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return sigma * math.sqrt(1.0 / n_ref + 1.0 / n)


def floor_offset(sigma: float, n_ref: int, alpha: float = DEFAULT_ALPHA, n: int | None = None) -> float:
    """How far the floor sits from the reference: z_{1−α}·SE (positive)."""
    return z_quantile(1.0 - _probability(alpha, "alpha")) * standard_error(sigma, n_ref, n)


def compute_threshold(
    reference: float,
    sigma: float,
    n_ref: int,
    alpha: float = DEFAULT_ALPHA,
    higher_is_better: bool = True,
    n: int | None = None,
) -> float:
    """The floor ref − z_{1−α}·SE for higher-is-better metrics, the ceiling ref + z_{1−α}·SE otherwise."""
    offset = floor_offset(sigma, n_ref, alpha, n)
    return reference - offset if higher_is_better else reference + offset


def compute_theta(
    sigma: float, n_ref: int, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA, n: int | None = None
) -> float:
    """The smallest regression caught with probability 1 − β: (z_{1−α} + z_{1−β})·SE."""
    z_sum = z_quantile(1.0 - _probability(alpha, "alpha")) + z_quantile(1.0 - _probability(beta, "beta"))
    return z_sum * standard_error(sigma, n_ref, n)


def wilson_interval(p_hat: float, n: int, confidence: float = WILSON_CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of an observed proportion p_hat over n samples (two-sided)."""
    _require_positive_n(n, "n")
    if not 0.0 <= p_hat <= 1.0:
        raise ValueError(f"a proportion must lie in [0, 1], got {p_hat}")
    z = z_quantile(1.0 - (1.0 - _probability(confidence, "confidence")) / 2.0)
    z2n = z * z / n
    centre = (p_hat + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p_hat * (1.0 - p_hat) / n + z2n / (4.0 * n))
    # At 0 and 1 the interval touches the edge exactly; rounding would leave 1e-17 instead.
    low = 0.0 if p_hat == 0.0 else max(0.0, centre - half)
    high = 1.0 if p_hat == 1.0 else min(1.0, centre + half)
    return low, high


def clustered_standard_error(scores: Sequence[float], clusters: Sequence[Any]) -> float:
    """Standard error of the mean of `scores` when units sharing a cluster (Video-MME's three questions per video)
    are correlated: the cluster-robust (sandwich) estimate sqrt(G/(G-1) * sum_g (sum_i (x_i - mean))^2) / n over
    G clusters, as lmms-eval's clustered stderr. With one unit per cluster it is the usual sample SE; 0 for one
    cluster (no spread is observable)."""
    if len(scores) != len(clusters):
        raise ValueError(f"{len(scores)} scores but {len(clusters)} cluster labels")
    n = len(scores)
    _require_positive_n(n, "n")
    mean = sum(scores) / n
    sums: dict[Any, float] = {}
    for score, cluster in zip(scores, clusters):
        sums[cluster] = sums.get(cluster, 0.0) + (score - mean)
    g = len(sums)
    if g < 2:
        return 0.0
    return math.sqrt(g / (g - 1) * sum(s * s for s in sums.values())) / n


def binomial_upper_tail(k: int, trials: int) -> float:
    """P(X ≥ k) for X ~ Binomial(trials, 1/2), exact (integer arithmetic, then one division)."""
    if k <= 0:
        return 1.0
    if k > trials:
        return 0.0
    return sum(math.comb(trials, i) for i in range(k, trials + 1)) / (1 << trials)


@dataclass(frozen=True, slots=True)
class McNemar:
    """Paired outcome counts: `regressions` right before and wrong now, `improvements` the reverse."""

    regressions: int
    improvements: int
    total: int
    p_value: float


def mcnemar_one_sided(
    baseline: Mapping[str, bool] | Sequence[bool], candidate: Mapping[str, bool] | Sequence[bool]
) -> McNemar:
    """Exact one-sided McNemar test that the candidate is worse than the baseline on the same items.

    Under H0 each discordant pair is a regression or an improvement with probability 1/2, so the
    p-value is P(X ≥ regressions) for X ~ Binomial(regressions + improvements, 1/2).
    Mappings (sample id → correct) are aligned by id; sequences by position.
    """
    pairs = _paired(baseline, candidate)
    regressions = sum(1 for before, now in pairs if before and not now)
    improvements = sum(1 for before, now in pairs if now and not before)
    p_value = binomial_upper_tail(regressions, regressions + improvements)
    return McNemar(regressions, improvements, len(pairs), p_value)


def mcnemar_two_sided(wins: int, losses: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs: 2·P(X ≤ min(wins, losses)), X ~ Bin(wins +
    losses, 1/2), capped at 1. The sign-flip distribution of a sum of ±1 values is this binomial, so
    `sign_flip_p_value` answers with it for units in {−1, 0, 1}."""
    discordant = wins + losses
    if discordant == 0:
        return 1.0
    return min(1.0, 2 * (1 - binomial_upper_tail(min(wins, losses) + 1, discordant)))


def _paired(baseline, candidate) -> list[tuple[bool, bool]]:
    if isinstance(baseline, Mapping) != isinstance(candidate, Mapping):
        raise TypeError("baseline and candidate must both be mappings (id -> correct) or both sequences")
    if isinstance(baseline, Mapping):
        only_base, only_cand = baseline.keys() - candidate.keys(), candidate.keys() - baseline.keys()
        if only_base or only_cand:
            example = sorted(map(str, only_base | only_cand))[:3]
            raise ValueError(
                f"baseline and candidate cover different samples: {len(only_base)} only in the baseline, "
                f"{len(only_cand)} only in the candidate (e.g. {', '.join(example)}); compare the same items"
            )
        return [(bool(baseline[k]), bool(candidate[k])) for k in baseline]
    if len(baseline) != len(candidate):
        raise ValueError(f"baseline has {len(baseline)} samples, candidate {len(candidate)}; compare the same items")
    return [(bool(b), bool(c)) for b, c in zip(baseline, candidate, strict=True)]


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
    run_alpha: tuple[float, int] | None = None  # (family-wise α, gates) when α is the run's share (harness.error_control)

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
        name = f"McNemar exact two-sided ({r.discordant[0]} up, {r.discordant[1]} down)" if r.discordant else "sign-flip"
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
        test, metric, observed, passed, "floor" if reference.higher_is_better else "ceiling", bound, source,
        reference=reference.value, n=n, n_ref=reference.n, sigma=reference.sigma, alpha=reference.alpha,
        beta=reference.beta, theta=theta, wilson=wilson, warnings=warnings, p_value=p_value,
    )  # fmt: skip


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
        test, metric, observed, passed, "max" if bound.upper else "min", bound.limit, source,
        reference=bound.value, n=n, n_ref=bound.n, wilson=wilson, detail=detail,
    )  # fmt: skip


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
        test, metric, observed, result.p_value >= _probability(alpha, "alpha"), "paired", alpha, source,
        n=result.total, alpha=alpha, mcnemar=result,
    )  # fmt: skip


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


EXACT_SIGN_FLIPS_UP_TO = 16  # 2^16 sign patterns; beyond, a fixed-seed Monte Carlo
SIGN_FLIP_DRAWS = 20000


def sign_flip_p_value(values: Sequence[float], seed: int = 0) -> float:
    """Two-sided p-value of mean = 0 when each value's sign is a coin flip under H0 (values symmetric about 0):
    the share of sign patterns whose |sum| reaches the observed one. Exact up to 16 values, else Monte Carlo
    (SIGN_FLIP_DRAWS draws, seeded, add-one so it is never 0)."""
    n = len(values)
    _require_positive_n(n, "n")
    if all(v in (-1, 0, 1) for v in values):  # paired right/wrong outcomes: exact at any n
        return mcnemar_two_sided(sum(v == 1 for v in values), sum(v == -1 for v in values))
    observed = abs(math.fsum(values)) * (1 - 1e-12)  # ties with the observed pattern count as extreme
    if n <= EXACT_SIGN_FLIPS_UP_TO:
        sums = [0.0]
        for value in values:  # every sign pattern's sum, built one value at a time
            sums = [s + value for s in sums] + [s - value for s in sums]
        return sum(abs(s) >= observed for s in sums) / len(sums)
    rng = random.Random(seed)
    hits = sum(abs(math.fsum(v if rng.random() < 0.5 else -v for v in values)) >= observed for _ in range(SIGN_FLIP_DRAWS))
    return (hits + 1) / (SIGN_FLIP_DRAWS + 1)


def shift_statistics(values: Sequence[float], test: ShiftTest) -> ShiftResult:
    n = len(values)
    _require_positive_n(n, "n")
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.inf
    se = sd / math.sqrt(n)
    z_ci = z_quantile(1 - (1 - SHIFT_CONFIDENCE) / 2)
    z_sum = z_quantile(1 - _probability(test.alpha, "alpha") / 2) + z_quantile(1 - _probability(test.beta, "beta"))
    paired = (sum(v == 1 for v in values), sum(v == -1 for v in values)) if all(v in (-1, 0, 1) for v in values) else None
    return ShiftResult(mean, mean - z_ci * se, mean + z_ci * se, sign_flip_p_value(values), n,
                       max(test.min_effect, z_sum * se), paired, abs(mean) <= test.min_effect)  # fmt: skip


def check_shift(test: str, metric: str, values: Sequence[float], spec: ShiftTest, source: str = "") -> Verdict:
    """Judge a shift that should be 0 from its per-unit values (e.g. one per prompt)."""
    result = shift_statistics(values, spec)
    passed = result.p_value >= spec.alpha or result.within_min_effect
    return Verdict(
        test, metric, result.mean, passed, "shift", spec.alpha, source, reference=0.0, n=result.n,
        alpha=spec.alpha, beta=spec.beta, theta=result.detectable, shift=result, p_value=result.p_value,
    )  # fmt: skip


def _probability(p: float, name: str) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {p}")
    return p


def _require_positive_n(n: int, name: str) -> None:
    if n is None or n < 1:
        raise ValueError(f"{name} must be a positive sample count, got {n}")
