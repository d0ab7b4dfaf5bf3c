"""One test's outcome: its checks (each a judged or recorded metric), the failures and notes, and the verdict the
report gives its row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.evals.types import EvalResult


@dataclass
class Outcome:
    checks: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: str = "pass"

    def lines(self) -> list[str]:
        return [check["message"] for check in self.checks if check.get("message")] + self.notes

    def as_record(self, nodeid: str, case, result: EvalResult) -> dict[str, Any]:
        return {
            "nodeid": nodeid,
            "suite": case.suite,
            "case": case.key,
            "verdict": self.verdict,
            "n": result.n,
            "metrics": result.metrics,
            "checks": self.checks,
            "failures": self.failures,
            "notes": self.notes,
            "details": result.details,
            "skipped": result.skipped,
            "options": case.options,
        }
