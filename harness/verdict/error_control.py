"""How much of α a run's statistical gates spend: each its own (`scope: gate`), or one α for the whole run.

A statistical gate is a check with a false-alarm rate: a floor or ceiling from a measured reference, or a
shift test (thresholds.yaml entries with `n`/`sigma`, or a `shift` metric). Plain bounds (`max`, `min`,
`min_ratio`, `max_ratio`) have no α and are not counted. Each gate fails a clean server with probability ≤ its
α, so a run of m gates at α each fails somewhere with probability up to 1 − Π(1 − α_i): 30 gates at 0.05 fail
79 % of clean nightlies.

`error_control: {scope: run, alpha: 0.05}` in thresholds.yaml makes the run's statistical gates one family
with family-wise error rate ≤ α: Bonferroni, each gate at α/m, where m is counted at collection over every
test the run selected (after -k and -m, before --harness-shard splits them, so the shards of one nightly share
one family) whose config can run here (one skipped for too few GPUs judges nothing). Why Bonferroni and not Holm's
step-down: whether the run fails is the same under both (Holm
rejects nothing exactly when its smallest p-value is ≥ α/m, which is Bonferroni's rule); Holm only flags more
gates in a run that already fails, and it needs every p-value before the first verdict, while pytest reports
each test as it ends. The price is sensitivity: θ grows with z_{1−α/m} (m = 6: 2.49 → 3.03 standard errors
at power 0.8), and every verdict line prints the θ it has. The paired tests taken after the run (cross-config
agreement, the baseline comparison: harness.report.compare) are decisions of their own at their own α, outside the
family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config.metrics import DEFAULT_ALPHA

STATISTICAL_KINDS = ("statistical", "shift")


@dataclass(frozen=True)
class Family:
    """The statistical gates one run will judge, and the α each gets."""

    scope: str
    alpha: float  # the run's family-wise α (scope run); unused with scope gate
    gates: tuple[tuple[str, float], ...]  # (suite[model/config] metric, the entry's own α)

    @property
    def size(self) -> int:
        return len(self.gates)

    @property
    def share(self) -> float:
        """Each gate's level under scope run: α/m (Bonferroni)."""
        return self.alpha / max(1, self.size)

    def level(self, entry_alpha: float) -> float:
        """The α one gate is judged at."""
        return self.share if self.scope == "run" else entry_alpha

    def family_alpha(self) -> tuple[float, float]:
        """The family-wise rate of false alarms of a clean run, at most: (the guaranteed bound, the value under
        independence) — Σ α_i and 1 − Π(1 − α_i); with scope run both stay ≤ α."""
        levels = [self.level(a) for _, a in self.gates]
        product = 1.0
        for a in levels:
            product *= 1.0 - a
        return min(1.0, sum(levels)), 1.0 - product

    def describe(self) -> str:
        bound, independent = self.family_alpha()
        if not self.gates:
            return "error control: no statistical gate in this run"
        if self.scope == "run":
            return (
                f"error control: per run: family-wise α {self.alpha:g} shared by {self.size} statistical gates "
                f"(Bonferroni: {self.share:.3g} each)"
            )
        counts: dict[float, int] = {}
        for _, a in self.gates:
            counts[a] = counts.get(a, 0) + 1
        each = ", ".join(f"{a:g} ×{c}" for a, c in sorted(counts.items(), reverse=True))
        return (
            f"error control: per gate: {self.size} statistical gates, each at its own α ({each}); a clean run "
            f"fails at least one with probability up to {independent:.1%} (independent gates; ≤ {bound:.1%} "
            "in any case); error_control: {scope: run} bounds it"
        )

    def record(self) -> dict[str, Any]:
        bound, independent = self.family_alpha()
        return {
            "scope": self.scope,
            "alpha": self.alpha,
            "gates": [g for g, _ in self.gates],
            "size": self.size,
            "level": self.share if self.scope == "run" else None,
            "family_alpha_bound": bound,
            "family_alpha_independent": independent,
        }


def family_of(thresholds, cases) -> Family:
    """The statistical gates of `cases` (each with .suite and .spec.model / .spec.config), in order, once each."""
    control = thresholds.doc.error_control
    gates: dict[str, float] = {}
    for case in cases:
        model, config = case.spec.model, case.spec.config
        metrics = dict.fromkeys(e.metric for e in thresholds.doc.references.get(case.suite, {}).get(model, []))
        for metric in metrics:
            match = thresholds.find_reference(case.suite, model, config, metric)
            if match is not None and match.entry.kind in STATISTICAL_KINDS and not match.entry.pending:
                alpha = DEFAULT_ALPHA if match.entry.alpha is None else match.entry.alpha
                gates.setdefault(f"{case.suite}[{model}/{config}] {metric}", alpha)
    return Family(control.scope, control.alpha, tuple(gates.items()))
