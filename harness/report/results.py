"""Reports under `reports/<run-id>/`, written as results arrive so an interrupted run still leaves valid files.

- `results.json`: run metadata (harness and engine versions, the project's git sha and dirty flag, GPUs, each
  server's command, the run's options and kind: harness.report.run_info) and one entry per test (metrics,
  reference, floor, θ, verdict). Rewritten atomically after every test.
- `samples/<suite>__<model>__<config>.jsonl`: per-sample records, appended and flushed one line at a time.
- `summary.md`: opens with the run's verdict (counts, the failing and erroring tests first with their reasons:
  harness.report.opening), then one row per test (verdict, reason), then model | config | suite | metric |
  observed | bound (≥ floor, ≤ ceiling) | verdict per check; also appended to `$GITHUB_STEP_SUMMARY` at the end
  of the session when that variable is set.
Secrets never reach these files: environment values are not recorded, and commands are scrubbed.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

import orjson

from harness import __version__
from harness.report.format import bound_text, cell, check_verdict, format_value
from harness.report.opening import opening_markdown, tests_table
from harness.report.run_info import describe, git_state, git_text, run_kind
from harness.serve.secrets import scrub, scrub_command


def _library_versions() -> dict[str, str | None]:
    """torch, transformers, tokenizers, safetensors as installed here (the HF engine's and the canary's numerics)."""
    from harness.report.versions import installed_versions

    return installed_versions()


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


class Report:
    """Collects what one pytest session measured; every mutation is persisted before it returns."""

    def __init__(self, run_dir: Path, root: Path, gpu_info: dict | None = None, options: dict | None = None):
        """`root`: the project root (its own git repository gives the sha); `options`: how the run was run
        (harness.pytest_plugin.run_options), recorded with the kind they make."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "samples").mkdir(exist_ok=True)
        self.data: dict[str, Any] = {
            "run": {
                "run_id": self.run_dir.name,
                "started": _dt.datetime.now().isoformat(timespec="seconds"),
                "harness_version": __version__,
                **git_state(root),
                "kind": run_kind(options or {}),
                "options": options or {},
                "python": platform.python_version(),
                "host": platform.node(),
                "gpus": gpu_info or {},
                "libraries": _library_versions(),
            },
            "servers": {},
            "tests": [],
        }
        self._sample_files: dict[str, Any] = {}
        self._step_summary_written = False
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

    def mark_failed(self, nodeid: str, reason: str) -> None:
        """The row of a test that failed after its verdict was recorded: `fail`, the failure first among its
        reasons, so the row agrees with pytest's outcome."""
        for test in self.data["tests"]:
            if test.get("nodeid") == nodeid and test.get("verdict") not in ("fail", "error"):
                test["failures"] = [scrub(reason.strip() or "failed"), *(test.get("failures") or [])]
                test["recorded_only"] = test.get("verdict") == "recorded"  # its checks stay unjudged
                test["verdict"] = "fail"
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
        if step_summary and not self._step_summary_written:  # once, also when a signal closed the report first
            self._step_summary_written = True
            with open(step_summary, "a", encoding="utf-8") as handle:  # opens with the verdict block of summary.md
                handle.write(self.summary_markdown() + "\n")

    def _flush(self) -> None:
        _atomic_write(self.run_dir / "results.json", orjson.dumps(self.data, option=orjson.OPT_INDENT_2, default=str))
        _atomic_write(self.summary_path, self.summary_markdown().encode())

    def summary_markdown(self) -> str:
        run = self.data["run"]
        lines = [
            f"# Validation run {run['run_id']}",
            "",
            *opening_markdown(self.data),
            f"harness {run['harness_version']}, git {git_text(run)}, started {run['started']}",
            "",
            describe(run),
            "",
            *tests_table(self.data["tests"]),
            "",
        ]
        for case_id, server in self.data["servers"].items():
            command = " ".join(server.get("command") or []) or "(attached)"
            lines.append(f"- `{case_id}`: {server.get('engine', '?')} {server.get('version', '')} — `{command}`")
        if run.get("error_control"):
            lines += ["", run["error_control"]["line"]]
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
