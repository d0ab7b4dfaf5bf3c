"""Reports under `reports/<run-id>/`, written as results arrive so an interrupted run still leaves valid files.

- `results.json`: run metadata (harness and engine versions, git sha, GPUs, each server's command) and one
  entry per test (metrics, reference, floor, θ, verdict). Rewritten atomically after every test.
- `samples/<suite>__<model>__<config>.jsonl`: per-sample records, appended and flushed one line at a time.
- `summary.md`: model | config | suite | metric | observed | bound (≥ floor, ≤ ceiling) | verdict; also appended to
  `$GITHUB_STEP_SUMMARY` at the end of the session when that variable is set.
Secrets never reach these files: environment values are not recorded, and commands are scrubbed.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import orjson

from harness import __version__
from harness.report.format import bound_text, cell, check_verdict, format_value
from harness.serve.secrets import scrub, scrub_command


def _git_sha(cwd: Path) -> str | None:
    """HEAD, with "+dirty" when tracked files differ from it: a tree copied to a GPU machine keeps a stale .git,
    and a report must not claim a commit it did not run."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True).stdout

    try:
        sha = git("rev-parse", "HEAD").strip()
        return sha + ("+dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _library_versions() -> dict[str, str | None]:
    """torch, transformers, tokenizers, safetensors as installed here (the HF engine's and the canary's numerics)."""
    from harness.report.versions import installed_versions

    return installed_versions()


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


class Report:
    """Collects what one pytest session measured; every mutation is persisted before it returns."""

    def __init__(self, run_dir: Path, root: Path, gpu_info: dict | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "samples").mkdir(exist_ok=True)
        self.data: dict[str, Any] = {
            "run": {
                "run_id": self.run_dir.name,
                "started": _dt.datetime.now().isoformat(timespec="seconds"),
                "harness_version": __version__,
                "git_sha": _git_sha(root),
                "python": platform.python_version(),
                "host": platform.node(),
                "gpus": gpu_info or {},
                "libraries": _library_versions(),
            },
            "servers": {},
            "tests": [],
        }
        self._sample_files: dict[str, Any] = {}
        self._flush()

    @property
    def summary_path(self) -> Path:
        return self.run_dir / "summary.md"

    def record_server(self, case_id: str, info: dict[str, Any]) -> None:
        entry = dict(info)
        if entry.get("command"):
            entry["command"] = scrub_command([str(a) for a in entry["command"]])
        self.data["servers"][case_id] = entry
        self._flush()

    def sample_sink(self, suite: str, case_slug: str):
        """A callable that appends one per-sample record as a JSONL line, flushed at once."""
        path = self.run_dir / "samples" / f"{suite}__{case_slug}.jsonl"
        handle = self._sample_files.get(str(path))
        if handle is None:
            handle = self._sample_files[str(path)] = open(path, "ab")  # noqa: SIM115 - open for the run, closed in close()

        def write(record: dict) -> None:
            handle.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
            handle.flush()

        return write

    def record_test(self, entry: dict[str, Any]) -> None:
        self.data["tests"].append(entry)
        self._flush()

    def record_run_error(self, message: str) -> None:
        self.data["run"]["error"] = scrub(message)
        self._flush()

    def has_test(self, nodeid: str) -> bool:
        return any(test.get("nodeid") == nodeid for test in self.data["tests"])

    def close(self) -> None:
        for handle in self._sample_files.values():
            handle.close()
        self._sample_files.clear()
        self.data["run"]["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
        self._flush()
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(self.summary_markdown() + "\n")

    def _flush(self) -> None:
        _atomic_write(self.run_dir / "results.json", orjson.dumps(self.data, option=orjson.OPT_INDENT_2, default=str))
        _atomic_write(self.summary_path, self.summary_markdown().encode())

    def summary_markdown(self) -> str:
        run = self.data["run"]
        lines = [
            f"# Validation run {run['run_id']}",
            "",
            f"harness {run['harness_version']}, git {str(run.get('git_sha'))[:12]}, started {run['started']}",
            "",
        ]
        for case_id, server in self.data["servers"].items():
            command = " ".join(server.get("command") or []) or "(attached)"
            lines.append(f"- `{case_id}`: {server.get('engine', '?')} {server.get('version', '')} — `{command}`")
        if run.get("error_control"):
            lines += ["", run["error_control"]["line"]]
        if run.get("error"):
            lines += [f"**The run did not start:** {cell(run['error'])}", ""]
        lines += [
            "",
            "| model | config | suite | metric | observed | bound | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for test in self.data["tests"]:
            model, _, config = test["case"].partition("/")
            if test["verdict"] in ("skipped", "error"):
                reason = cell(test.get("skipped") or test.get("error") or "")
                lines.append(f"| {model} | {config} | {test['suite']} | – | – | – | {test['verdict']}: {reason} |")
                continue
            for check in test.get("checks") or [{"metric": "-", "observed": None, "bound": None}]:
                lines.append(
                    f"| {model} | {config} | {test['suite']} | {check['metric']} "
                    f"| {format_value(check.get('observed'))} "
                    f"| {bound_text(check)} | {check_verdict(test, check)} |"
                )
        return "\n".join(lines) + "\n"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
