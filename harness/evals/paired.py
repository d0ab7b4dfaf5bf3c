"""Two answers to every question, compared one by one: the result of the parity and mode-agreement suites.

`pairs` are (under test, reference) sample dicts with a boolean `correct`; `same(a, b)` says whether two answers
agree (`same_answer`: the parsed answers, or the texts when neither parsed). Metrics: `answer_agreement`,
`accuracy_gap` (per question −1, 0, 1: judged by the exact two-sided McNemar test through its units), `accuracy`
and `reference_accuracy`. The first disagreements go into the notes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.evals.types import EvalResult

SHOWN_DISAGREEMENTS = 5
KEPT_DISAGREEMENTS = 20  # in details, for the report


def same_answer(test: dict, ref: dict) -> bool:
    """Parsed answers equal; two unreadable answers agree only when their texts do (else None == None would hide
    any difference in what the model said)."""
    if test["parsed"] is None and ref["parsed"] is None:
        return test["output"].strip() == ref["output"].strip()
    return test["parsed"] == ref["parsed"]


def paired_result(
    suite: str,
    case_id: str,
    pairs: Sequence[tuple[dict, dict]],
    same: Callable[[dict, dict], bool],
    line: Callable[[dict, dict], str],
    details: Mapping[str, Any],
) -> EvalResult:
    n = len(pairs)
    gaps = [float(test["correct"]) - float(ref["correct"]) for test, ref in pairs]
    disagreements = [(test, ref) for test, ref in pairs if not same(test, ref)]
    shown = min(SHOWN_DISAGREEMENTS, len(disagreements))
    notes = [
        f"{suite}[{case_id}]: {len(disagreements)} of {n} answers differ"
        + (f"; the first {shown}:" if disagreements else "")
    ]
    notes += ["  " + line(test, ref) for test, ref in disagreements[:SHOWN_DISAGREEMENTS]]
    return EvalResult(
        suite=suite,
        n=n,
        metrics={
            "answer_agreement": 1 - len(disagreements) / n,
            "accuracy_gap": sum(gaps) / n,
            "accuracy": sum(test["correct"] for test, _ in pairs) / n,
            "reference_accuracy": sum(ref["correct"] for _, ref in pairs) / n,
        },
        details={
            "better_under_test": sum(g > 0 for g in gaps),
            "better_on_reference": sum(g < 0 for g in gaps),
            **details,
            "disagreements": [line(t, r) for t, r in disagreements[:KEPT_DISAGREEMENTS]],
        },
        units={"accuracy_gap": gaps},
        notes=notes,
    )
