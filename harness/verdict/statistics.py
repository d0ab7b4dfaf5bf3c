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
from dataclasses import dataclass
from statistics import NormalDist

from harness.config.metrics import DEFAULT_ALPHA, DEFAULT_BETA

WILSON_CONFIDENCE = 0.95
SHIFT_CONFIDENCE = 0.95  # of the interval a shift verdict prints


def z_quantile(p: float) -> float:
    """The standard normal quantile Φ⁻¹(p)."""
    return NormalDist().inv_cdf(p)


def standard_error(sigma: float, n_ref: int, n: int | None = None) -> float:
    """SE of (run − reference): σ·√(1/n_ref + 1/n); equals √(2σ²/n) when n = n_ref."""
    require_positive_n(n_ref, "n_ref")
    n = n_ref if n is None else n
    require_positive_n(n, "n")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return sigma * math.sqrt(1.0 / n_ref + 1.0 / n)


def floor_offset(sigma: float, n_ref: int, alpha: float = DEFAULT_ALPHA, n: int | None = None) -> float:
    """How far the floor sits from the reference: z_{1−α}·SE (positive)."""
    return z_quantile(1.0 - probability(alpha, "alpha")) * standard_error(sigma, n_ref, n)


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
    z_sum = z_quantile(1.0 - probability(alpha, "alpha")) + z_quantile(1.0 - probability(beta, "beta"))
    return z_sum * standard_error(sigma, n_ref, n)


def wilson_interval(p_hat: float, n: int, confidence: float = WILSON_CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of an observed proportion p_hat over n samples (two-sided)."""
    require_positive_n(n, "n")
    if not 0.0 <= p_hat <= 1.0:
        raise ValueError(f"a proportion must lie in [0, 1], got {p_hat}")
    z = z_quantile(1.0 - (1.0 - probability(confidence, "confidence")) / 2.0)
    z2n = z * z / n
    centre = (p_hat + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p_hat * (1.0 - p_hat) / n + z2n / (4.0 * n))
    # At 0 and 1 the interval touches the edge exactly; rounding would leave 1e-17 instead.
    low = 0.0 if p_hat == 0.0 else max(0.0, centre - half)
    high = 1.0 if p_hat == 1.0 else min(1.0, centre + half)
    return low, high


def binomial_upper_tail(k: int, trials: int) -> float:
    """P(X ≥ k) for X ~ Binomial(trials, 1/2), exact (integer arithmetic, then one division)."""
    if k <= 0:
        return 1.0
    if k > trials:
        return 0.0
    return sum(math.comb(trials, i) for i in range(k, trials + 1)) / (1 << trials)


def binomial_cdf(k: int, trials: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(trials, p), exact up to float rounding (log-space terms, so any n works)."""
    if k < 0:
        return 0.0
    if k >= trials:
        return 1.0
    if p <= 0.0 or p >= 1.0:
        return 1.0 if p <= 0.0 else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(trials + 1) - math.lgamma(i + 1) - math.lgamma(trials - i + 1) + i * log_p + (trials - i) * log_q
        for i in range(k + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


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


EXACT_SIGN_FLIPS_UP_TO = 16  # 2^16 sign patterns; beyond, a fixed-seed Monte Carlo
SIGN_FLIP_DRAWS = 20000


def sign_flip_p_value(values: Sequence[float], seed: int = 0) -> float:
    """Two-sided p-value of mean = 0 when each value's sign is a coin flip under H0 (values symmetric about 0):
    the share of sign patterns whose |sum| reaches the observed one. Exact up to 16 values, else Monte Carlo
    (SIGN_FLIP_DRAWS draws, seeded, add-one so it is never 0)."""
    n = len(values)
    require_positive_n(n, "n")
    if all(v in (-1, 0, 1) for v in values):  # paired right/wrong outcomes: exact at any n
        return mcnemar_two_sided(sum(v == 1 for v in values), sum(v == -1 for v in values))
    observed = abs(math.fsum(values)) * (1 - 1e-12)  # ties with the observed pattern count as extreme
    if n <= EXACT_SIGN_FLIPS_UP_TO:
        sums = [0.0]
        for value in values:  # every sign pattern's sum, built one value at a time
            sums = [s + value for s in sums] + [s - value for s in sums]
        return sum(abs(s) >= observed for s in sums) / len(sums)
    rng = random.Random(seed)
    hits = sum(
        abs(math.fsum(v if rng.random() < 0.5 else -v for v in values)) >= observed for _ in range(SIGN_FLIP_DRAWS)
    )
    return (hits + 1) / (SIGN_FLIP_DRAWS + 1)


def probability(p: float, name: str) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {p}")
    return p


def require_positive_n(n: int, name: str) -> None:
    if n is None or n < 1:
        raise ValueError(f"{name} must be a positive sample count, got {n}")
