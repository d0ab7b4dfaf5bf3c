"""How a run was run: its options, its kind, the series it belongs to, and the project's own git state.

A run's `kind` says what its numbers can be used for: `full` (every question, judged), `limited`
(--harness-limit N: a subset), `smoke` (a few samples, nothing asserted) or `no-reference` (recorded, not judged).
Its `series` (the kind, with the limit, and an engine override) keeps the history's trends and the comparison
with a baseline apart for runs that measured different things: a limited run never becomes a full run's baseline
or its trend's next point unnoticed.

The git state is the project's own: the repository whose top level is the project root (where thresholds.yaml and
pytest's rootdir live). A tree copied into another repository, or one with no repository at all, reports
`unknown`, never the sha of a repository that happens to sit above it.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

KINDS = ("full", "limited", "smoke", "no-reference")
UNKNOWN = "unknown"


def git_state(root: Path) -> dict[str, Any]:
    """{"git_sha": HEAD or "unknown", "git_dirty": whether tracked files differ from HEAD (None when unknown)}."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True).stdout

    try:
        top = Path(git("rev-parse", "--show-toplevel").strip()).resolve()
        if top != Path(root).resolve():  # a repository above the project, not the project's own
            return {"git_sha": UNKNOWN, "git_dirty": None}
        sha = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):  # no git, no repository, or a repository without a commit
        return {"git_sha": UNKNOWN, "git_dirty": None}
    return {"git_sha": sha, "git_dirty": dirty}


def file_sha256(path: Path) -> str | None:
    """The file's sha256 (hex), None when it cannot be read (the run's config error says why)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def run_kind(options: dict[str, Any]) -> str:
    """full | limited | smoke | no-reference, from the run's options (smoke wins: it also limits and records)."""
    if options.get("smoke"):
        return "smoke"
    if options.get("no_reference"):
        return "no-reference"
    if options.get("limit") is not None:
        return "limited"
    return "full"


def series_of(run: dict[str, Any], with_limit: bool = True) -> str | None:
    """The label that keeps differently-run results apart: "" for a full run on each config's own engine, else
    e.g. "limited to 30", "smoke", "no-reference, engine hf"; None for a run recorded before runs kept their
    options (its kind is not known). `with_limit=False`: "limited" whatever the limit (compare pairs the questions
    themselves, and says how many differ)."""
    options = run.get("options")
    if options is None:
        return None
    kind = run_kind(options)
    limited = f"limited to {options.get('limit')}" if with_limit else "limited"
    parts = [limited if kind == "limited" else kind] if kind != "full" else []
    if options.get("engine") not in (None, "yaml", "attach"):
        parts.append(f"engine {options['engine']}")
    return ", ".join(parts)


def describe(run: dict[str, Any]) -> str:
    """One line for summary.md and report.html: the kind, the selection, the config and its hash, the engine."""
    options = run.get("options")
    if options is None:
        return "run options: not recorded"
    shown = [f"kind {run_kind(options)}"]
    for key, label in (
        ("limit", "--harness-limit"),
        ("keyword", "-k"),
        ("markers", "-m"),
        ("shard", "--harness-shard"),
        ("base_url", "--harness-base-url"),
        ("baseline", "--harness-baseline"),
    ):
        if options.get(key) not in (None, ""):
            shown.append(f"{label} {options[key]!r}" if key in ("keyword", "markers") else f"{label} {options[key]}")
    for key, flag in (
        ("smoke", "--harness-smoke"),
        ("no_reference", "--harness-no-reference"),
        ("update_thresholds", "--harness-update-thresholds"),
    ):
        if options.get(key):
            shown.append(flag)
    if options.get("engine") not in (None, "yaml"):
        shown.append(f"--harness-engine {options['engine']}")
    sha = options.get("config_sha256")
    shown.append(f"config {options.get('config')} (sha256 {sha[:12] if sha else 'unreadable'})")
    return "run: " + ", ".join(shown)


def git_text(run: dict[str, Any]) -> str:
    """'1c52271a9f3e', '1c52271a9f3e (dirty)' or 'unknown'."""
    return str(run.get("git_sha"))[:12] + (" (dirty)" if run.get("git_dirty") else "")
