"""The run's verdict, as summary.md, report.html and a CI step summary open with it, and each test's one-line reason.

A run fails when a test failed or errored, or when it did not start; the failing and erroring tests come first,
each with the reason its row gives. Every test has one row of its own (verdict and reason), also a test that failed
before any metric was gated or that recorded without judging (--harness-no-reference, --harness-smoke), so a
failing run never reads as a table of `recorded` cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.report.format import cell

VERDICTS = ("fail", "error", "pass", "recorded", "skipped")  # the order of the counts and of the tests table
SHOWN = {"fail": "FAIL", "error": "ERROR"}  # the verdicts a reader must not miss, in capitals


def row_id(test: dict[str, Any]) -> str:
    return f"{test['suite']}[{test['case']}]"


def shown_verdict(test: dict[str, Any]) -> str:
    verdict = str(test.get("verdict"))
    return SHOWN.get(verdict, verdict)


def row_reason(test: dict[str, Any]) -> str:
    """Why the test has its verdict, one line: the failure message of a failing test (also one with no gated metric),
    the error, the skip reason, what a recorded test would have been judged, a passing test's judged check."""
    verdict = test.get("verdict")
    checks = test.get("checks") or []
    failing = [*(test.get("failures") or []), *(c.get("message") for c in checks if c.get("passed") is False)]
    failing = [text for text in failing if text]
    if verdict == "error":
        texts = [test.get("error") or "error, no reason recorded"]
    elif verdict == "skipped":
        texts = [test.get("skipped") or "skipped, no reason recorded"]
    elif verdict == "fail":
        texts = failing or ["failed, no reason recorded"]
    elif verdict == "recorded":
        said = [note for note in test.get("notes") or [] if "recorded, not judged" in note]
        passing = _passing(test)
        would = f"; would fail: {_strip(test, failing[0])}" if failing else ""
        would = would or (f"; would pass: {passing}" if passing else "")
        texts = said or [f"recorded, not judged{would}"]
    else:
        texts = [_passing(test) or next(iter(test.get("notes") or []), "")]
    return cell(_strip(test, str(texts[0])))


def _passing(test: dict[str, Any]) -> str:
    """The first passing judged check's message, and how many more passed."""
    judged = [c["message"] for c in test.get("checks") or [] if c.get("passed") is True and c.get("message")]
    more = f" (and {len(judged) - 1} more check(s))" if len(judged) > 1 else ""
    return _strip(test, judged[0]) + more if judged else ""


def _strip(test: dict[str, Any], text: str) -> str:
    """A message without the `suite[model/config]: ` its row already names."""
    return text.strip().removeprefix(row_id(test) + ": ")


@dataclass
class RunVerdict:
    word: str  # FAIL | PASS | RECORDED | SKIPPED | NO TESTS
    counts: dict[str, int]
    first: list[dict[str, Any]] = field(default_factory=list)  # the failing, then the erroring tests
    did_not_start: str | None = None

    @property
    def line(self) -> str:
        total = sum(self.counts.values())
        counts = ", ".join(f"{n} {v}" for v, n in self.counts.items())
        return f"{self.word}: {counts} ({total} test{'s' if total != 1 else ''})"


def run_verdict(data: dict[str, Any]) -> RunVerdict:
    tests = data.get("tests", [])
    counts = {v: sum(t.get("verdict") == v for t in tests) for v in VERDICTS}
    error = (data.get("run") or {}).get("error")
    if error or counts["fail"] or counts["error"]:
        word = "FAIL"
    else:
        word = next(
            (w for v, w in (("pass", "PASS"), ("recorded", "RECORDED"), ("skipped", "SKIPPED")) if counts[v]),
            "NO TESTS",
        )
    first = [t for v in ("fail", "error") for t in tests if t.get("verdict") == v]
    return RunVerdict(word, counts, first, cell(error) if error else None)


def opening_markdown(data: dict[str, Any]) -> list[str]:
    """The block summary.md opens with (and a CI step summary gets): the verdict line, then each failing and
    erroring test with its reason."""
    verdict = run_verdict(data)
    lines = [f"**{verdict.line}**", ""]
    if verdict.did_not_start:
        lines += [f"**The run did not start:** {verdict.did_not_start}", ""]
    lines += [f"- {shown_verdict(t)} `{row_id(t)}`: {row_reason(t)}" for t in verdict.first]
    return lines + ([""] if verdict.first else [])


def tests_table(tests: list[dict[str, Any]]) -> list[str]:
    """One row per test, failing and erroring first: test, verdict, reason."""
    ordered = sorted(tests, key=lambda t: VERDICTS.index(t["verdict"]) if t.get("verdict") in VERDICTS[:2] else 2)
    rows = [f"| {cell(row_id(t))} | {shown_verdict(t)} | {row_reason(t)} |" for t in ordered]
    return ["| test | verdict | reason |", "|---|---|---|", *rows] if rows else []
