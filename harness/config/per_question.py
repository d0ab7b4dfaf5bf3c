"""A reference run's per-question records: which questions it answered right, so a limited run is judged on the
same questions, paired (harness.verdict.subset), instead of against the whole set's accuracy.

A statistical entry names the file with `per_question: PATH` (relative to thresholds.yaml). The file is small JSON:

    {"suite": "mmmu", "model": "canary-vlm", "metric": "accuracy", "provenance": "...",
     "correct": ["validation_Art_1", ...], "wrong": ["validation_Art_7", ...]}

`--harness-update-thresholds` rewrites it from a full run when the entry names one (harness.config.update).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PerQuestion:
    """The reference run's answers, question id → right, and where they came from."""

    answers: Mapping[str, bool]
    provenance: str
    path: str

    @property
    def accuracy(self) -> float:
        return sum(self.answers.values()) / len(self.answers)


def read_per_question(path: str | os.PathLike[str], where: str = "") -> PerQuestion:
    """Read a per-question file; a missing or malformed one is a ConfigError naming the file and the entry."""
    at = f"{where}: " if where else ""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{at}per_question file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{at}per_question file {path}: not valid JSON: {exc}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("correct"), list)
        or not isinstance(data.get("wrong"), list)
    ):
        raise ConfigError(f"{at}per_question file {path}: expected a mapping with 'correct' and 'wrong' id lists")
    answers = {str(i): True for i in data["correct"]}
    both = answers.keys() & {str(i) for i in data["wrong"]}
    if both:
        raise ConfigError(f"{at}per_question file {path}: ids both right and wrong: {', '.join(sorted(both)[:3])}")
    answers.update({str(i): False for i in data["wrong"]})
    if not answers:
        raise ConfigError(f"{at}per_question file {path}: no questions")
    return PerQuestion(answers, str(data.get("provenance", "")), str(path))


def per_question_problems(doc, base_dir: Path, source: str) -> list[str]:
    """Every `per_question` file a thresholds.yaml names must read (checked at load, not at the verdict). One not
    written yet is no error: limited runs are then judged by the binomial bound, and their lines say so."""
    problems = []
    for suite, models in doc.references.items():
        for model, entries in models.items():
            for i, entry in enumerate(entries):
                if entry.per_question is not None and (base_dir / entry.per_question).is_file():
                    where = f"{source}: references.{suite}.{model}[{i}].per_question"
                    try:
                        read_per_question(base_dir / entry.per_question, where)
                    except ConfigError as exc:
                        problems.append(str(exc))
    return problems


def write_per_question(
    path: str | os.PathLike[str], about: Mapping[str, str], answers: Mapping[str, bool], provenance: str
) -> None:
    """Write a full run's answers (`about`: suite, model, metric), ids sorted so a re-measurement diffs line by line."""
    data = {
        **about,
        "provenance": provenance,
        "n": len(answers),
        "correct": sorted(k for k, v in answers.items() if v),
        "wrong": sorted(k for k, v in answers.items() if not v),
    }
    text = json.dumps(data, indent=0, ensure_ascii=False) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
