"""Whether the installed libraries are the ones the committed canary was built with (manifest.json `versions`).

The canary's weights, hashes and accuracies are float results of torch, transformers, tokenizers and
safetensors at the recorded versions; other versions may rebuild different bytes or move an exact accuracy.
The comparison is pure (`version_differences`, `describe`) so it can be tested without installing anything;
`installed_versions` reads package metadata, which is cheap (nothing is imported).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

CANARY_MANIFEST = Path(__file__).resolve().parents[2] / "assets" / "canary" / "manifest.json"
# The libraries whose floats went into the canary (canary.build.library_versions records more:
# python, cpu_capability, machine; those matter for the byte-identical rebuild, which checks them itself).
CANARY_LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors")

Differences = dict[str, tuple[str | None, str | None]]


def recorded_versions(manifest_path: Path = CANARY_MANIFEST) -> dict[str, str]:
    """The manifest's `versions` mapping (KeyError names the file when it has none)."""
    manifest = json.loads(manifest_path.read_text())
    if "versions" not in manifest:
        raise KeyError(f"{manifest_path}: no 'versions' key; it has {sorted(manifest)}")
    return dict(manifest["versions"])


def installed_versions(names: tuple[str, ...] = CANARY_LIBRARIES) -> dict[str, str | None]:
    """Installed distribution versions by name; None for one that is not installed."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def version_differences(recorded: Mapping[str, str], installed: Mapping[str, str | None]) -> Differences:
    """{name: (recorded, installed)} for each name in `installed` whose version is not exactly the recorded one
    (a name the manifest lacks counts as a difference, recorded None)."""
    return {name: (recorded.get(name), have) for name, have in installed.items() if recorded.get(name) != have}


class CanaryVersionWarning(UserWarning):
    """A canary test runs on library versions other than the recorded ones (its exact numbers may move)."""


def describe(recorded: Mapping[str, str], installed: Mapping[str, str | None]) -> str:
    """One line, e.g. 'built with transformers 5.23.0, installed 5.24.0 (...)', or that every library matches;
    libraries that are not installed at all are listed apart (tests that need them skip)."""
    differences = version_differences(recorded, installed)
    missing = [name for name, (_, now) in differences.items() if now is None]
    changed = {name: pair for name, pair in differences.items() if pair[1] is not None}
    same = [f"{name} {now}" for name, now in installed.items() if name not in differences]
    segments = []
    if changed:
        parts = [f"{name} {was or '(not recorded)'}, installed {now}" for name, (was, now) in changed.items()]
        segments.append("built with " + "; ".join(parts) + " (exact canary numbers and rebuild hashes may differ)")
    elif same:
        segments.append(f"built with {', '.join(same)}; installed the same")
    if missing:
        segments.append(f"not installed: {', '.join(missing)}")
    return "; ".join(segments)


def warn_unless_recorded(installed: Mapping[str, str | None], manifest_path: Path = CANARY_MANIFEST) -> None:
    """For tests whose exact numbers come from the recorded libraries: a CanaryVersionWarning (shown in pytest's
    warnings summary, at the caller's line) when the installed ones differ, so a failure there reads as what it
    may be, the library rather than the harness."""
    recorded = recorded_versions(manifest_path)
    if version_differences(recorded, installed):
        warnings.warn(f"canary: {describe(recorded, installed)}", CanaryVersionWarning, stacklevel=2)
