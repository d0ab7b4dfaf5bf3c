"""The object that owns one check's verdict and message: whether an observed value passed, against what, how that
bound was derived, and the one line (and the longer report) that explains it. harness.verdict.checks builds them."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.config.metrics import METRICS
from harness.verdict.statistics import SHIFT_CONFIDENCE, WILSON_CONFIDENCE, McNemar


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
    judged: str = ""  # a limited run: what was judged and how (harness.verdict.subset); replaces the floor's detail

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
        if self.judged:
            return self._limited_message() + where
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

    def _limited_message(self) -> str:
        observed = f"{self.test}: {self.metric} {self._fmt(self.observed)}"
        if self.kind == "paired":
            how = "no significant loss" if self.passed else "lost"
            return f"{observed}, {how} vs the reference's {self._fmt(self.reference)} on them ({self.judged})"
        op = ("≥" if self.passed else "<") if self.kind == "floor" else ("≤" if self.passed else ">")
        return f"{observed} {op} {self.kind} {self._fmt(self.bound)} ({self.judged})"

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
