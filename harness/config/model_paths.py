"""Local model directories that thresholds.yaml names but that are not there, said before anything launches.

A model's `path` (and `tokenizer`, and a config's `--speculative-draft-model-path`) is a hub id (`org/name`) or a
local directory, resolved against the YAML file's folder (harness.config.thresholds.resolve_model_path). A local
one that is missing is reported with its key path, the value, where it was looked for, and the directory it most
likely meant when one next to it is a near miss (`assets/canary/modle` -> `assets/canary/model`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path

from harness.config.thresholds import PATH_FLAGS, Thresholds, resolve_model_path


def missing_model_paths(thresholds: Thresholds, selected: Iterable[tuple[str, str]]) -> list[str]:
    """One message per missing local directory named by the selected (model, config) pairs, each key path once."""
    base, seen, problems = thresholds.path.parent, set(), []
    for model, config in selected:
        spec = thresholds.model(model)
        named = [(f"models.{model}.path", spec.path)]
        if spec.tokenizer:
            named.append((f"models.{model}.tokenizer", spec.tokenizer))
        args = list(thresholds.config(model, config).args)
        named += [
            (f"models.{model}.configs.{config}.args[{i + 1}]", args[i + 1])
            for i, arg in enumerate(args[:-1])
            if arg in PATH_FLAGS
        ]
        for key, value in named:
            problem = None if key in seen else _missing(str(value), base)
            seen.add(key)
            if problem:
                problems.append(f"{thresholds.source}: {key}: {problem}")
    return problems


def _missing(value: str, base: Path) -> str | None:
    resolved = resolve_model_path(value, base)
    if not os.path.isabs(resolved) or Path(resolved).is_dir():  # a hub id stays relative; or it is there
        return None
    return (
        f"no directory {value!r} (looked for {resolved}){_near_miss(value, base)}; "
        "give an existing local model directory or a hub id like 'org/name'"
    )


def _near_miss(value: str, base: Path) -> str:
    """' (did you mean 'x'?)' when the first missing part of the path has a close sibling that makes it a directory."""
    parts = Path(os.path.expanduser(value)).parts
    at = base
    for i, part in enumerate(parts):
        if (at / part).exists():
            at = at / part
            continue
        siblings = [p.name for p in at.iterdir() if p.is_dir()] if at.is_dir() else []
        close = difflib.get_close_matches(part, siblings, n=1, cutoff=0.6)
        if close and (base / Path(*parts[:i], close[0], *parts[i + 1 :])).is_dir():
            return f" (did you mean {str(Path(*parts[:i], close[0], *parts[i + 1 :]))!r}?)"
        return ""
    return ""
