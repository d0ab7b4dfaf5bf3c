"""How the report shows a value, a bound and a check's verdict: one set of rules for summary.md, report.html and
the comparison lines."""

from __future__ import annotations

from typing import Any


def cell(text: str) -> str:
    """One Markdown table cell: first line only, pipes escaped."""
    return str(text).strip().splitlines()[0].replace("|", "\\|") if str(text).strip() else ""


def bound_text(check: dict) -> str:
    """The bound with its direction: '≥ 0.958' for floors and minimums, '≤ 1e-06' for ceilings and maximums."""
    if check.get("bound") is None:
        return "–"
    if check.get("kind") == "paired":  # a limited run paired with the reference's answers; the bound is α
        return f"paired (α={check['bound']:g})"
    if check.get("kind") == "shift":  # tested against 0; the bound is the test's α
        return f"= 0 (α={check['bound']:g})"
    upper = check.get("kind") in ("ceiling", "max")
    return f"{'≤' if upper else '≥'} {format_value(check['bound'])}"


def check_verdict(test: dict, check: dict) -> str:
    if check.get("metric") == "-" and check.get("message"):  # failed before any metric: the reason is the verdict
        return f"FAIL: {cell(check['message'])}"
    if check.get("passed") is None:
        return "recorded" if test["verdict"] != "fail" or check.get("message") is None else "FAIL"
    if test["verdict"] == "recorded" or test.get("recorded_only"):
        return "recorded"
    return "pass" if check["passed"] else "FAIL"


def format_value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)
