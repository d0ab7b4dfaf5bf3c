"""Judging a limited run: n questions of the n_ref its reference was measured on (`--harness-limit`, or a suite's
own `limit` below the reference's n).

The normal floor ref − z·σ·√(1/n_ref + 1/n) is wrong there: at p ≈ 0.98 and n = 30 a proportion is far from normal,
and a healthy engine that scores 28 of 30 falls below it. Two exact tests replace it, each judging only what the
reference knows about *these* questions:

- paired, when the entry's `per_question` file (harness.config.per_question) holds the reference run's answer to
  every question of the subset: the exact one-sided McNemar test (harness.verdict.statistics) on the questions the
  two runs answered differently; a healthy engine loses about as many as it gains, and when both runs are exact,
  none;
- otherwise an exact one-sided binomial test at the reference's accuracy: fail when P(X ≤ k) < α for
  X ~ Binomial(n, ref). For a subset of the reference's own questions the count right is hypergeometric under H0,
  which is narrower than this binomial, so the test's false-alarm rate stays at or below α.

The verdict line says which was judged, e.g. `(limited: 30 of 900 questions; exact binomial at ref 0.979, ...)`.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.config.metrics import metric_info
from harness.config.per_question import PerQuestion
from harness.verdict.statistics import McNemar, binomial_cdf, mcnemar_one_sided


def is_limited(metric: str, n: int | None, n_ref: int | None) -> bool:
    """True for a proportion judged on fewer questions than its reference had."""
    return n is not None and n_ref is not None and n < n_ref and metric_info(metric).proportion


def check_subset(
    base,
    answers: Mapping[str, bool] | None,
    records: PerQuestion | None,
    higher_is_better: bool = True,
):
    """Re-judge a floor verdict (`base`, a harness.verdict.verdict.Verdict from check_statistical; not imported, to
    keep import chains short) of a limited run exactly, in place:
    paired on the same questions where `records` cover every answered one, else binomial at the reference."""
    limited = f"limited: {base.n} of {base.n_ref} questions"
    if records is not None and not records.answers:
        limited += f"; no per-question records at {records.path} yet, so"
    elif answers and records is not None:
        missing = [q for q in answers if q not in records.answers]
        if not missing:
            return _paired(base, answers, records, limited)
        limited += f"; {len(missing)} not in the reference's records ({records.path}), so"
    return _binomial(base, limited, higher_is_better)


def _binomial(base, limited: str, higher_is_better: bool):
    n, ref, alpha = base.n, base.reference, base.alpha
    k = round(base.observed * n)
    if higher_is_better:
        p_value = binomial_cdf(k, n, ref)
        edge = next(j for j in range(n + 1) if binomial_cdf(j, n, ref) >= alpha)  # the fewest right that pass
        tail = f"P(≤ {k} right)"
    else:  # a rate that should stay low: the mirror image, counting the wrong ones
        p_value = binomial_cdf(n - k, n, 1.0 - ref)
        edge = n - next(j for j in range(n + 1) if binomial_cdf(j, n, 1.0 - ref) >= alpha)
        tail = f"P(≥ {k})"
    passed = p_value >= alpha
    base.passed, base.bound, base.p_value, base.theta, base.warnings = passed, edge / n, p_value, None, []
    base.judged = (
        f"{limited}; exact binomial at ref {base._fmt(ref)}: {tail}={p_value:.2g}"
        f" {'≥' if passed else '<'} {base._alpha_text()}"
    )
    return base


def _paired(base, answers: Mapping[str, bool], records: PerQuestion, limited: str):
    reference = {q: records.answers[q] for q in answers}
    result: McNemar = mcnemar_one_sided(reference, dict(answers))
    passed = result.p_value >= base.alpha
    ref_here = sum(reference.values()) / len(reference)
    base.kind, base.bound, base.passed, base.p_value = "paired", base.alpha, passed, result.p_value
    base.mcnemar, base.theta, base.warnings, base.reference = result, None, [], ref_here
    base.judged = (
        f"{limited}; paired with the reference run on the same {result.total}: {result.regressions} lost,"
        f" {result.improvements} gained, exact McNemar p={result.p_value:.2g}"
        f" {'≥' if passed else '<'} {base._alpha_text()}"
    )
    return base
