"""Writing measured values into thresholds.yaml (`--harness-update-thresholds`), as text so comments, order and
layout stay.

From a full run, for each suite of a config: an entry that already matches gets its `value`, `n`, measured `sigma`
(a statistical entry: the sample standard deviation of the per-question scores) and a one-line `provenance` (date,
run id, GPU, engine and version), and its `per_question` file when it names one; a model with no entry for the
suite yet gets the suite's template entries (harness.config.templates) with the measured values filled in. A
limited or smoke run never writes (`refuse_partial_update`). Every edit is validated before it replaces the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.config.metrics import metric_info
from harness.config.per_question import write_per_question
from harness.config.templates import (
    UPDATE,
    WRITTEN_KINDS,
    entries_text,
    scalar,
    template_entries,
    update_command,
    yaml_float,
)
from harness.config.thresholds import Thresholds, load_thresholds, parse_thresholds
from harness.config.yaml_errors import Loc, key_path
from harness.config.yaml_text import add_key, replace_scalar
from harness.errors import ConfigError


def refuse_partial_update(update: bool, limit: int | None, smoke: bool) -> None:
    """A reference comes from a full run: a limited or smoke run must never rewrite one."""
    if update and (limit is not None or smoke):
        what = f"--harness-limit {limit}" if limit is not None else "--harness-smoke"
        raise ConfigError(
            f"{UPDATE} refuses to write references from a {'limited' if limit is not None else 'smoke'} run ({what}):"
            f" a reference is measured on the full question set; run again without {what}"
        )


@dataclass(frozen=True, slots=True)
class Measured:
    """One metric of a full run: its value over n samples, the per-sample σ, and (an accuracy) each answer."""

    metric: str
    value: float
    n: int
    sigma: float | None = None
    answers: Mapping[str, bool] | None = None


def measured_sigma(metric: str, value: float, n: int, units: Sequence[float] | None = None) -> float | None:
    """The per-sample standard deviation: of the 0/1 scores for a proportion (all alike: of (k + ½)/(n + 1), so a
    perfect run does not leave σ 0 and a floor at 1.0), else of the per-unit values when the eval gave them."""
    if metric_info(metric).proportion and n > 1:
        k = round(value * n)
        if k in (0, n):
            p = (k + 0.5) / (n + 1)
            return math.sqrt(p * (1 - p))
        return math.sqrt(k * (n - k) / (n * (n - 1)))
    if units and len(units) > 1:
        mean = math.fsum(units) / len(units)
        return math.sqrt(math.fsum((u - mean) ** 2 for u in units) / (len(units) - 1))
    return None


def measurements(
    metrics: Mapping[str, float],
    n: int,
    units: Mapping[str, Sequence[float]] | None = None,
    answers: Mapping[str, bool] | None = None,
) -> list[Measured]:
    """A run's finite metrics as measurements (an accuracy with its answers, question by question)."""
    return [
        Measured(
            metric,
            float(value),
            n,
            measured_sigma(metric, float(value), n, (units or {}).get(metric)),
            answers if metric == "accuracy" else None,
        )
        for metric, value in metrics.items()
        if isinstance(value, int | float) and math.isfinite(value)
    ]


def write_measurements(
    path: str | os.PathLike[str],
    at: tuple[str, str, str],
    measured: Sequence[Measured],
    provenance: str,
    gpu: str | None = None,
) -> list[str]:
    """Create or update the entries of references.<suite>.<model> for config `at` = (suite, model, config) from a
    full run's measurements; returns one line per entry written."""
    suite, model, config = at
    current = dataclasses.replace(load_thresholds(path), gpu=gpu)
    if not current.doc.references.get(suite, {}).get(model):
        return _create(path, current, at, measured, provenance)
    lines = []
    for m in measured:
        match = current.find_reference(suite, model, config, m.metric)
        if match is None or match.entry.kind not in WRITTEN_KINDS:
            continue
        entry = match.entry
        sigma = m.sigma if entry.kind == "statistical" else None
        update_reference(path, suite, model, match.index, m.value, m.n, sigma=sigma, provenance=provenance)
        written = f"{m.metric}={m.value:.6g} (n={m.n}{f', σ={sigma:.3g}' if sigma is not None else ''})"
        if entry.per_question and m.answers:
            write_per_question(
                current.path.parent / entry.per_question,
                {"suite": suite, "model": model, "metric": m.metric},
                m.answers,
                provenance,
            )
            written += f" and {len(m.answers)} answers into {entry.per_question}"
        lines.append(f"{suite}[{model}/{config}]: wrote {written} into {match.path}")
    return lines


def _create(path, current: Thresholds, at, measured: Sequence[Measured], provenance: str) -> list[str]:
    suite, model, config = at
    by_metric = {m.metric: m for m in measured}
    entries = []
    for entry in template_entries(suite, current.numerics(model, config)):
        m = by_metric.get(entry["metric"])
        if "value" in entry and m is not None:
            entry.update(value=m.value, n=m.n, provenance=provenance)
            if "sigma" in entry and m.sigma is not None:
                entry["sigma"] = float(f"{m.sigma:.3g}")
        entries.append(entry)
    if not entries:
        raise ConfigError(
            f"{current.source}: references.{suite} has no template for a new model ({suite} is set by hand per GPU);"
            f" add the entries under references.{suite}.{model} (docs/thresholds.md)"
        )
    text = add_key(
        Path(path).read_text(encoding="utf-8"),
        current.source,
        ("references", suite),
        model,
        lambda indent: entries_text(entries, indent + 2),
    )
    _replace_file(path, text, current)
    return [
        f"{suite}[{model}/{config}]: created references.{suite}.{model}[{i}] {e['metric']}"
        + (f"={e['value']:.6g} (n={e['n']})" if e.get("value") is not None else "")
        for i, e in enumerate(entries)
    ]


def update_reference(
    path: str | os.PathLike[str],
    suite: str,
    model: str,
    index: int,
    value: float,
    n: int | None = None,
    *,
    sigma: float | None = None,
    provenance: str | None = None,
) -> Thresholds:
    """Write a measured value (and n, σ, provenance) into an entry that already exists; refuse anything else.

    Only those scalars are replaced in the text; the result is validated before it replaces the file."""
    current = load_thresholds(path)
    entry_loc: Loc = ("references", suite, model, index)
    where = f"{current.source}: {key_path(entry_loc)}"
    if entry_loc not in current.spans:
        raise ConfigError(f"{where} does not exist; create it with {update_command(suite, model, '<config>')}")
    entry = current.doc.references[suite][model][index]
    edits = {"value": yaml_float(value)}
    if n is not None:
        edits["n"] = str(int(n))
    if sigma is not None:  # three significant digits: the floor moves by less than the last one
        edits["sigma"] = yaml_float(float(f"{sigma:.3g}"))
    if provenance is not None:
        edits["provenance"] = scalar(provenance)
    for key in edits:
        if (*entry_loc, key) not in current.spans:
            bound = f" (a bound: {entry.kind} set by hand)" if entry.kind in ("max", "min") else ""
            raise ConfigError(f"{where} has no '{key}' key to update{bound}; add `{key}:` to the entry first")
    text = Path(path).read_text(encoding="utf-8")
    # From the end of the file backwards, so earlier offsets stay valid.
    for key in sorted(edits, key=lambda k: -current.spans[(*entry_loc, k)].start):
        text = replace_scalar(text, current.source, (*entry_loc, key), edits[key])
    return _replace_file(path, text, current)


def _replace_file(path, text: str, current: Thresholds) -> Thresholds:
    updated = parse_thresholds(text, current.path, current.source)
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return updated
