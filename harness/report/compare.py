"""A run against a baseline run: is this build worse than the last good one, on the same questions?

    python -m harness compare BASE_RUN_DIR NEW_RUN_DIR [--alpha 0.05] [--perf-tolerance 0.1]
    pytest suites ... --harness-baseline BASE_RUN_DIR       (the same comparison, printed and written at the end)

For every (suite, model/config) row present in both runs' results.json:
- accuracy suites (per-sample records with `id` and `correct`, in `samples/`): the records are paired by id, and
  each pair must carry the same `prompt_sha256`; correctness is compared by the exact two-sided McNemar test
  (harness.verdict.statistics) on the fixed (wrong → right) and broken (right → wrong) questions: `worse` when p < α and
  more broke than were fixed, `better` the other way, else `same`; the first broken ids are printed.
- serving_perf: each gated metric's new median against the baseline's repeats, `worse` when it is beyond
  `perf_tolerance` of the baseline median in the bad direction *and* outside the baseline's own spread.
- the rest: each metric the baseline's row judged; `worse` when a check that passed there fails now.
`not comparable`, with the reason, when the questions, prompts or n differ, a side has no samples or errored, or
the two runs were run differently (harness.report.run_info.series_of: a limited, smoke or no-reference run against
a full one, another engine): never a silent pass. A row skipped in either run because the machine lacked the GPUs is
`skipped` and the other rows are judged. A row that fails its own threshold in both runs is `still failing` (unless
it is also worse): not the same as a passing row. `cross_config` holds a run's configs of one model to its
`reference_config` the same way. The release verdict is `worse` if any row is worse, `still failing` if a row is;
exit status 1 then, 2 when neither but a row is not comparable, 0 otherwise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.metrics import metric_info
from harness.report.format import format_value
from harness.report.opening import row_reason
from harness.report.run_info import series_of
from harness.verdict.statistics import mcnemar_two_sided

SHOWN_BROKEN = 5
# harness.serve.pool's skip of a config that needs more GPUs than the machine has (tests/test_compare_runs.py runs one)
NO_GPUS = re.compile(r"needs \d+ GPU\(s\), \d+ available")


@dataclass
class RowComparison:
    suite: str
    case: str
    verdict: str  # better | same | worse | still failing | not comparable | skipped
    line: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    root: Path
    rows: dict[tuple[str, str], dict]
    run: dict[str, Any] = field(default_factory=dict)  # results.json's run metadata: how it was run

    @classmethod
    def load(cls, root: str | Path) -> Run:
        root = Path(root)
        results = root / "results.json"
        if not results.is_file():
            raise FileNotFoundError(f"{root}: no results.json (give a run directory, reports/<run-id>/)")
        data = json.loads(results.read_text())
        return cls(root, {(row["suite"], row["case"]): row for row in data.get("tests", [])}, data.get("run") or {})

    def samples(self, suite: str, case: str) -> list[dict] | None:
        path = self.root / "samples" / f"{suite}__{case.replace('/', '__')}.jsonl"
        if not path.is_file():
            return None
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare_runs(base: Run, new: Run, alpha: float = 0.05, perf_tolerance: float = 0.1) -> list[RowComparison]:
    out = []
    differently = run_differently(base, new)
    for key in sorted(base.rows.keys() | new.rows.keys()):
        suite, case = key
        if key not in base.rows or key not in new.rows:
            where = "the baseline" if key not in base.rows else "this run"
            out.append(RowComparison(suite, case, "not comparable", f"{suite}[{case}]: not comparable: not in {where}"))
            continue
        skipped = _skipped_for_gpus(base.rows[key], new.rows[key])
        if skipped:
            out.append(RowComparison(suite, case, "skipped", f"{suite}[{case}]: skipped: {skipped}"))
        elif differently:
            out.append(_not_comparable(suite, case, differently))
        else:
            out.append(compare_row(base, new, key, alpha, perf_tolerance))
    return out


def run_differently(base: Run, new: Run) -> str | None:
    """Why two runs' numbers are not the same kind of measurement (a limited or smoke run against a full one,
    another engine), or None; a run recorded before runs kept their options is taken as it is."""
    was, now = series_of(base.run, with_limit=False), series_of(new.run, with_limit=False)
    if was is None or now is None or was == now:
        return None
    return f"the runs were run differently (the baseline: {was or 'full'}; this run: {now or 'full'})"


def _skipped_for_gpus(old_row: dict, new_row: dict) -> str | None:
    for name, row in (("the baseline", old_row), ("this run", new_row)):
        if row.get("verdict") == "skipped" and NO_GPUS.search(str(row.get("skipped") or "")):
            return f"{name}: {row['skipped']}"
    return None


def compare_row(base: Run, new: Run, key: tuple[str, str], alpha: float, perf_tolerance: float) -> RowComparison:
    """The row of `key` in both runs compared; `still failing` when it fails its own threshold in both (unless the
    comparison finds it worse)."""
    suite, case = key
    old_row, new_row = base.rows[key], new.rows[key]
    compared = _compare_measured(base, new, key, alpha, perf_tolerance)
    if old_row.get("verdict") == new_row.get("verdict") == "fail" and compared.verdict != "worse":
        prefix = f"{suite}[{case}]: "
        against = compared.line.removeprefix(prefix)
        compared.line = f"{prefix}still failing: {row_reason(new_row)} (as in the baseline; {against})"
        compared.verdict = "still failing"
    return compared


def _compare_measured(base: Run, new: Run, key: tuple[str, str], alpha: float, perf_tolerance: float):
    suite, case = key
    old_row, new_row = base.rows[key], new.rows[key]
    for name, row in (("the baseline", old_row), ("this run", new_row)):
        if row.get("verdict") in ("error", "skipped") or not row.get("metrics"):
            return _not_comparable(suite, case, f"{name}'s row is {row.get('verdict')} with no metrics")
    old_samples, new_samples = base.samples(suite, case), new.samples(suite, case)
    if _is_accuracy(old_samples) and _is_accuracy(new_samples):
        return _compare_accuracy(suite, case, old_samples, new_samples, alpha)
    if suite == "serving_perf":
        return _compare_perf(suite, case, old_row, new_row, perf_tolerance)
    return _compare_checks(suite, case, old_row, new_row)


def _not_comparable(suite: str, case: str, why: str) -> RowComparison:
    return RowComparison(suite, case, "not comparable", f"{suite}[{case}]: not comparable: {why}")


def _is_accuracy(samples: list[dict] | None) -> bool:
    return bool(samples) and all("id" in s and "correct" in s for s in samples)


def _compare_accuracy(suite: str, case: str, old: list[dict], new: list[dict], alpha: float) -> RowComparison:
    old_by_id, new_by_id = {str(s["id"]): s for s in old}, {str(s["id"]): s for s in new}
    if old_by_id.keys() != new_by_id.keys():
        only_old, only_new = old_by_id.keys() - new_by_id.keys(), new_by_id.keys() - old_by_id.keys()
        return _not_comparable(
            suite,
            case,
            f"the questions differ ({len(only_old)} only in the baseline, {len(only_new)} only in this run)",
        )
    changed = [i for i in old_by_id if old_by_id[i].get("prompt_sha256") != new_by_id[i].get("prompt_sha256")]
    if changed:
        return _not_comparable(
            suite, case, f"{len(changed)} of {len(old_by_id)} prompts differ (first: id {changed[0]})"
        )
    broken = [i for i in old_by_id if old_by_id[i]["correct"] and not new_by_id[i]["correct"]]
    fixed = [i for i in old_by_id if new_by_id[i]["correct"] and not old_by_id[i]["correct"]]
    p = mcnemar_two_sided(len(fixed), len(broken))
    n = len(old_by_id)
    verdict = "same" if p >= alpha or len(fixed) == len(broken) else ("worse" if len(broken) > len(fixed) else "better")
    test = f"McNemar exact two-sided p={p:.3g} {'<' if p < alpha else '≥'} α={alpha:g}"
    line = f"{suite}[{case}]: {verdict}: {len(broken)} broken, {len(fixed)} fixed of {n} ({test})"
    if broken:
        line += f"; first broken: {', '.join(broken[:SHOWN_BROKEN])}"
    accuracy = (sum(s["correct"] for s in old) / n, sum(s["correct"] for s in new) / n)
    return RowComparison(
        suite,
        case,
        verdict,
        line,
        {
            "n": n,
            "broken": broken,
            "fixed": fixed,
            "p_value": p,
            "accuracy": {"baseline": accuracy[0], "new": accuracy[1]},
        },
    )


def _compare_perf(suite: str, case: str, old_row: dict, new_row: dict, tolerance: float) -> RowComparison:
    parts, worse, better, details = [], [], [], {}
    for metric, new_value in new_row["metrics"].items():
        old_value = old_row["metrics"].get(metric)
        if old_value is None:
            continue
        spread = _perf_spread(old_row, metric)
        ratio = new_value / old_value if old_value else float("inf")
        lower_is_better = not metric_info(metric).higher_is_better
        bad = ratio > 1 + tolerance if lower_is_better else ratio < 1 - tolerance
        good = ratio < 1 - tolerance if lower_is_better else ratio > 1 + tolerance
        outside = spread is None or not spread[0] <= new_value <= spread[1]
        (worse if bad and outside else better if good and outside else []).append(metric)
        parts.append(f"{metric} {new_value:.4g} vs {old_value:.4g} (×{ratio:.2f})")
        details[metric] = {"baseline": old_value, "new": new_value, "ratio": ratio, "baseline_spread": spread}
    verdict = "worse" if worse else "better" if better else "same"
    return RowComparison(
        suite,
        case,
        verdict,
        f"{suite}[{case}]: {verdict}: {', '.join(parts)} (tolerance "
        f"{tolerance:.0%} and outside the baseline's repeats)",
        details,
    )


def _perf_spread(row: dict, metric: str) -> list[float] | None:
    from harness.evals.serving_perf import GATE_METRICS

    for block in (row.get("details") or {}).get("workloads", {}).values():
        if metric in block.get("gates", []):
            return block.get("spread", {}).get(GATE_METRICS[metric])
    return None


def _compare_checks(suite: str, case: str, old_row: dict, new_row: dict) -> RowComparison:
    if old_row.get("n") != new_row.get("n"):
        return _not_comparable(suite, case, f"n differs ({old_row.get('n')} in the baseline, {new_row.get('n')} now)")
    old_checks = {c["metric"]: c for c in old_row.get("checks", []) if c.get("passed") is not None}
    new_checks = {c["metric"]: c for c in new_row.get("checks", []) if c.get("passed") is not None}
    newly_failing = [m for m, c in new_checks.items() if not c["passed"] and old_checks.get(m, {}).get("passed")]
    newly_passing = [
        m for m, c in new_checks.items() if c["passed"] and m in old_checks and not old_checks[m]["passed"]
    ]
    verdict = "worse" if newly_failing else "better" if newly_passing else "same"
    shown = ", ".join(
        f"{m} {format_value(old_row['metrics'].get(m))} → {format_value(new_row['metrics'].get(m))}"
        for m in new_row["metrics"]
    )
    return RowComparison(
        suite,
        case,
        verdict,
        f"{suite}[{case}]: {verdict}: {shown}",
        {"newly_failing": newly_failing, "newly_passing": newly_passing},
    )


ANSWER_KEYS = ("parsed", "extracted_flexible", "pred")  # a sample's answer as its eval parsed it (else its output)


def cross_config(run: Run, reference_configs: dict[str, list[str]], alpha: float = 0.05) -> list[RowComparison]:
    """Within one run: every config of a model against the model's reference config (`reference_config:` in
    thresholds.yaml), suite by suite, question by question, as TensorRT-LLM holds every parallel config to one
    reference (the first of a model's list that ran the suite). Correctness by McNemar as against a baseline,
    plus the share of questions answered alike."""
    out = []
    for suite, case in sorted(run.rows):
        model, config = case.split("/", 1)
        present = [c for c in reference_configs.get(model, []) if (suite, f"{model}/{c}") in run.rows]
        reference = present[0] if present else None
        ref_key = (suite, f"{model}/{reference}")
        if reference is None or config == reference:
            continue
        mine, theirs = run.samples(suite, case), run.samples(*ref_key)
        label = f"{model}/{config} vs {reference}"
        if not (_is_accuracy(mine) and _is_accuracy(theirs)):
            continue  # agreement is defined on per-question answers only
        row = _compare_accuracy(suite, label, theirs, mine, alpha)
        if row.verdict != "not comparable":
            by_id = {str(s["id"]): s for s in theirs}
            alike = sum(_same_answer(s, by_id[str(s["id"])]) for s in mine)
            row.details["answer_agreement"] = alike / len(mine)
            row.line += f"; answers alike {alike}/{len(mine)}"
        out.append(row)
    return out


def _same_answer(a: dict, b: dict) -> bool:
    """Parsed answers equal; two unparsed ones only when their outputs are (as harness.evals.paired.same_answer)."""
    key = next((k for k in ANSWER_KEYS if k in a and k in b), None)
    if key is None or (a[key] is None and b[key] is None):
        return str(a.get("output", "")).strip() == str(b.get("output", "")).strip()
    return a[key] == b[key]


def release_verdict(rows: list[RowComparison]) -> tuple[str, int]:
    """The release line and the exit status: 1 when a row is worse or still failing, 2 when none is but one is not
    comparable; skipped rows are counted, and judge nothing."""
    counts = {v: sum(r.verdict == v for r in rows) for v in ("worse", "not comparable", "better", "same")}
    extra = {v: sum(r.verdict == v for r in rows) for v in ("still failing", "skipped")}
    summary = ", ".join(f"{n} {v}" for v, n in [*counts.items(), *((v, n) for v, n in extra.items() if n)])
    if counts["worse"]:
        return f"release: worse ({summary})", 1
    if extra["still failing"]:
        return f"release: still failing ({summary})", 1
    if counts["not comparable"]:
        return f"release: not comparable ({summary})", 2
    return f"release: not worse ({summary})", 0


def write_comparison(path: Path, base: Run, new: Run, rows: list[RowComparison], release: str) -> None:
    record = {
        "baseline": str(base.root),
        "run": str(new.root),
        "release": release,
        "rows": [
            {"suite": r.suite, "case": r.case, "verdict": r.verdict, "line": r.line, "details": r.details} for r in rows
        ],
    }
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
