"""From an eval's metrics to verdicts: pick each metric's reference, check it, optionally write it back.

Every metric that has a matching entry under `references.<suite>.<model>` is judged; metrics without one
are recorded only. A suite none of whose metrics has an entry fails with the list of entries that do exist
(unless the run records only), so a missing reference is never a silent pass.
"""

from __future__ import annotations

import math

from harness.config.per_question import PerQuestion, read_per_question
from harness.config.templates import WRITTEN_KINDS
from harness.errors import ConfigError, NoReferenceError
from harness.evals.types import EvalResult
from harness.verdict.checks import check_reference
from harness.verdict.outcome import Outcome


def judge(session, case, result: EvalResult) -> Outcome:
    opt = session.config.option
    outcome = Outcome()
    if result.skipped:
        outcome.verdict = "skipped"
        return outcome
    model, config = case.spec.model, case.spec.config
    if opt.harness_update_thresholds:  # create or update this suite's entries from the run, then judge the rest
        outcome.notes.extend(session.write_measurements(case, result))
    thresholds = session.thresholds
    for metric, observed in result.metrics.items():
        match = thresholds.find_reference(case.suite, model, config, metric)
        if match is None:
            outcome.checks.append({"metric": metric, "observed": observed, "bound": None, "passed": None})
            continue
        check = {"metric": metric, "observed": observed, "reference": match.path, "passed": None, "bound": None}
        outcome.checks.append(check)
        if opt.harness_update_thresholds and match.entry.kind in WRITTEN_KINDS:
            continue  # just written from this run: recorded, not judged against itself
        try:
            verdict = check_reference(
                match,
                observed,
                n=result.n,
                units=result.units.get(metric),
                family=session.family,
                subset=(result.details.get("per_sample_correct"), _records(thresholds, match)),
            )
        except NoReferenceError as exc:
            check["message"] = str(exc)
            outcome.failures.append(str(exc))
            continue
        if isinstance(observed, float) and math.isnan(observed):
            verdict.passed = False
        check.update(
            passed=verdict.passed,
            bound=verdict.bound,
            kind=verdict.kind,
            theta=verdict.theta,
            wilson=verdict.wilson,
            message=verdict.message(),
            warnings=verdict.warnings,
        )
        if verdict.judged:  # a limited run: what was judged, and how (harness.verdict.subset)
            check.update(limited={"n": verdict.n, "of": verdict.n_ref, "method": verdict.kind}, judged=verdict.judged)
        if verdict.p_value is not None:  # what the false-alarm bench needs to re-judge the gate at another α
            check.update(p_value=verdict.p_value, alpha=verdict.alpha)
            if verdict.shift is not None:  # a shift inside min_effect passes whatever its p
                check["within_min_effect"] = verdict.shift.within_min_effect
        if not verdict.passed:
            outcome.failures.append(verdict.report())
        elif verdict.warnings:
            outcome.notes.extend(f"{match.test_id}: warning: {w}" for w in verdict.warnings)
    outcome.notes.extend(result.notes)
    other_gpus = _references_for_other_gpus(thresholds, case.suite, model) if not outcome.failures else []
    if not any("reference" in check for check in outcome.checks) and other_gpus:
        outcome.notes.append(
            f"{case.suite}[{model}/{config}]: recorded, not judged: no reference for GPU "
            f"{thresholds.gpu!r} (references.{case.suite}.{model} has {', '.join(other_gpus)})"
        )
        outcome.verdict = "recorded"
        return outcome
    if not any("reference" in check for check in outcome.checks) and not opt.harness_no_reference:
        try:
            thresholds.reference_for(case.suite, model, config)
        except ConfigError as exc:
            outcome.failures.append(str(exc))
    if opt.harness_smoke:
        for check in outcome.checks:  # a smoke run judges nothing: its checks say so
            if check.get("message"):
                check["message"] = f"smoke run ({result.n} samples), not judged: {check['message']}"
            check.update(smoke=True, passed=None)
        outcome.verdict = "recorded"
    elif opt.harness_no_reference or (opt.harness_update_thresholds and not outcome.failures):
        outcome.verdict = "recorded"
    elif outcome.failures:
        outcome.verdict = "fail"
    return outcome


def _records(thresholds, match):
    """The entry's reference run answers (harness.config.per_question); None when it names no file, none (an empty
    PerQuestion) when the file is not written yet: a limited run is then judged by the exact binomial bound."""
    if match.entry.per_question is None:
        return None
    path = thresholds.path.parent / match.entry.per_question
    if not path.is_file():
        return PerQuestion({}, "", match.entry.per_question)
    return read_per_question(path, f"{match.source}: {match.path}.per_question")


def _references_for_other_gpus(thresholds, suite: str, model: str) -> list[str]:
    """The GPU models the entries of references.<suite>.<model> are for, when all are for one and none is this run's."""
    entries = thresholds.doc.references.get(suite, {}).get(model, [])
    gpus = sorted({e.match.gpu for e in entries if e.match.gpu})
    if not entries or len(gpus) == 0 or any(e.match.gpu is None for e in entries):
        return []
    return [] if (thresholds.gpu or "").lower() in (g.lower() for g in gpus) else gpus
