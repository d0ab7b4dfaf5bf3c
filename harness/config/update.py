"""Writing measured values back into thresholds.yaml (`--harness-update-thresholds`): the two scalars of an entry
that already exists are replaced in the text, so comments, order and layout stay as they were."""

from __future__ import annotations

import os
from pathlib import Path

from harness.config.thresholds import Thresholds, load_thresholds, parse_thresholds
from harness.config.yaml_errors import Loc, key_path
from harness.errors import ConfigError


def update_reference(
    path: str | os.PathLike[str], suite: str, model: str, index: int, value: float, n: int | None = None
) -> Thresholds:
    """Write an observed value (and n) into an entry that already exists; refuse anything else.

    Only the two scalars are replaced in the text, so comments, order and layout stay as they were;
    the result is validated before it replaces the file. Returns the reloaded thresholds.
    """
    current = load_thresholds(path)
    entry_loc: Loc = ("references", suite, model, index)
    where = f"{current.source}: {key_path(entry_loc)}"
    if entry_loc not in current.spans:
        raise ConfigError(
            f"{where} does not exist; add an entry to thresholds.yaml first (metric, value: null, n: null, sigma,"
            " match, provenance), then run --harness-update-thresholds again"
        )
    entry = current.doc.references[suite][model][index]
    edits = {"value": value, "n": n} if n is not None else {"value": value}
    for key in edits:
        if (*entry_loc, key) not in current.spans:
            bound = f" (a bound: {entry.kind} set by hand)" if entry.kind in ("max", "min") else ""
            raise ConfigError(f"{where} has no '{key}' key to update{bound}; add `{key}:` to the entry first")
    text = Path(path).read_text(encoding="utf-8")
    # Replace from the end of the file backwards so earlier offsets stay valid.
    for key, new in sorted(edits.items(), key=lambda kv: -current.spans[(*entry_loc, kv[0])].start):
        span = current.spans[(*entry_loc, key)]
        text = text[: span.start] + (str(int(new)) if key == "n" else _yaml_float(new)) + text[span.end :]
    updated = parse_thresholds(text, current.path, current.source)
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return updated


def _yaml_float(x: float) -> str:
    """A float PyYAML reads back as a float: 6 significant digits, always with a '.' (1e-05 is a string there)."""
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"refusing to write a non-finite value ({x}) into thresholds.yaml")
    mantissa, e, exponent = format(x, ".6g").partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + (e + exponent if e else "")
