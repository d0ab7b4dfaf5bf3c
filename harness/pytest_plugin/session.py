"""State of one pytest session of the harness: the matrix, the server pool, the report, the verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.client.http import ClientOptions
from harness.errors import ConfigError, HarnessError
from harness.evals.types import EvalResult
from harness.pytest_plugin.run import HarnessRun
from harness.report.results import Report, new_run_id
from harness.serve.attach_check import ServerMismatch
from harness.serve.pool import Case, PoolSettings, ServerPool
from harness.serve.server import NothingAnswers, ServerLost


class HarnessSession:
    def __init__(self, config: pytest.Config):
        self.config = config
        opt = config.option
        self.root = Path(config.rootpath)
        self.run_dir = Path(self.root, opt.harness_report_dir, new_run_id())
        self._thresholds = None
        self._report: Report | None = None
        self.planned_keys: dict[str, int] = {}
        self.planned_items: list[tuple[str, Case]] = []  # (nodeid, case) of every selected harness test
        self.config_error: ConfigError | None = None
        self.verdict_lines: list[str] = []
        self._pool: ServerPool | None = None
        self.in_progress: tuple[str, Case] | None = None  # (nodeid, case) of the test now running
        self.interrupted: str | None = None
        self.family = None  # harness.verdict.error_control.Family of the run's statistical gates, set at collection
        self._unregister_signal = lambda: None

    def _runs_here(self, case) -> bool:
        try:
            return self.pool.skip_reason(case.spec) is None
        except Exception:
            return True

    def plan_family(self, cases) -> None:
        """Count the statistical gates of every selected test (all shards) before the first verdict."""
        from harness.verdict.error_control import family_of

        if not cases:
            return
        runnable = [case for case in cases if self._runs_here(case)]  # a config skipped for GPUs judges nothing
        self.family = family_of(self.thresholds, runnable)
        if self.family.size:
            self.verdict_lines.append(self.family.describe())

    # -- configuration -------------------------------------------------------------------------------
    @property
    def thresholds_path(self) -> Path:
        """--harness-config as typed, relative to the working directory; by default thresholds.yaml in the rootdir."""
        given = self.config.option.harness_config
        return Path(self.config.invocation_params.dir, given) if given else Path(self.root, "thresholds.yaml")

    def judge(self, case: Case, result: EvalResult):
        """The verdict of one test's metrics against thresholds.yaml (harness.verdict.judge)."""
        from harness.verdict.judge import judge

        return judge(self, case, result)

    def write_measurements(self, case: Case, result: EvalResult) -> list[str]:
        """--harness-update-thresholds: create or update the suite's entries from this full run
        (harness.config.update)."""
        import datetime

        from harness.config.update import measurements, refuse_partial_update, write_measurements

        opt = self.config.option
        refuse_partial_update(True, opt.harness_limit, opt.harness_smoke)
        server = self._ensure_report().data["servers"].get(case.spec.id, {})
        gpu = self.thresholds.gpu if self.thresholds.gpu not in (None, "cpu") else None
        provenance = (
            f"measured {datetime.date.today().isoformat()} by --harness-update-thresholds, run {self.run_dir.name},"
            f" {f'GPU {gpu}' if gpu else 'CPU'}, {server.get('engine', '?')} {server.get('version') or '?'}"
        )
        found = measurements(result.metrics, result.n, result.units, result.details.get("per_sample_correct"))
        at = (case.suite, case.spec.model, case.spec.config)
        lines = write_measurements(self.thresholds_path, at, found, provenance, gpu=self.thresholds.gpu)
        self._thresholds = None  # re-read: the next verdicts see what was written
        return lines

    @property
    def thresholds(self):
        if self._thresholds is None:
            import dataclasses

            from harness.config.thresholds import load_thresholds
            from harness.serve.gpus import detect_gpus, gpu_model

            # the run's GPU model picks perf references (`match: {gpu: H200}`)
            self._thresholds = dataclasses.replace(load_thresholds(self.thresholds_path), gpu=gpu_model(detect_gpus()))
        return self._thresholds

    def cases_for(self, suite: str) -> list[Case]:
        from harness.config.thresholds import KNOWN_SUITES

        if suite not in KNOWN_SUITES:
            from harness.errors import unknown_choice

            raise unknown_choice("suite", suite, KNOWN_SUITES, where="test function name")
        return [Case(spec=spec, suite=suite, options=options) for spec, options in self.thresholds.cases(suite)]

    # -- servers and report --------------------------------------------------------------------------
    @property
    def report(self) -> Report | None:
        return self._report

    def _ensure_report(self) -> Report:
        if self._report is None:
            from harness.pytest_plugin.run_options import run_options
            from harness.serve import process_group
            from harness.serve.gpus import detect_gpus

            options = run_options(self.config, self.thresholds_path)
            self._report = Report(self.run_dir, self.root, gpu_info=detect_gpus().as_dict(), options=options)
            if self.family is not None:
                self._report.data["run"]["error_control"] = {**self.family.record(), "line": self.family.describe()}
            self._unregister_signal = process_group.on_fatal_signal(self.on_fatal_signal)
        return self._report

    @property
    def pool(self) -> ServerPool:
        if self._pool is None:
            from harness.serve.gpus import parse_gpu_option

            opt = self.config.option
            settings = PoolSettings(
                engine_override=None if opt.harness_engine in ("yaml", "attach") else opt.harness_engine,
                base_url=opt.harness_base_url if opt.harness_engine == "attach" or opt.harness_base_url else None,
                log_dir=self.run_dir / "logs",
                gpu_ids=tuple(parse_gpu_option(opt.harness_gpus)),
                client_options=ClientOptions(
                    max_concurrency=opt.harness_concurrency, timeout_s=opt.harness_request_timeout
                ),
                startup_timeout=opt.harness_startup_timeout,
            )
            self._pool = ServerPool(settings, on_started=self._record_server)
        return self._pool

    def _record_server(self, spec, live) -> None:
        server = live.server
        self._ensure_report().record_server(
            spec.id,
            {
                "engine": self.pool.engine_for(spec),
                "version": getattr(server, "version", None),
                "command": list(getattr(server, "command", None) or []),
                "base_url": server.base_url,
                "log": str(getattr(server, "log_path", "") or ""),
                "startup_s": getattr(server, "startup_s", None),
                "server_info": _summarize_info(live.info),
                "preflight_warnings": self.pool.preflight_warnings.get(spec.id, []),
                **({"attach_check": live.attach_check.record()} if live.attach_check else {}),
                # a deployment's members in start order: role, URL, command, log (harness.serve.deployment)
                **({"deployment": server.describe()} if hasattr(server, "describe") else {}),
            },
        )

    def run_for(self, case: Case, node: pytest.Item) -> HarnessRun:
        try:
            self.pool.preflight(case.spec)
        except HarnessError as exc:
            pytest.fail(f"{case.suite}[{case.key}]: rejected before launch: {exc}", pytrace=False)
        reason = self.pool.skip_reason(case.spec)
        if reason:
            pytest.skip(reason)  # its report row comes from record_unjudged, as every skip's does
        self._ensure_report()
        try:
            live = self.pool.acquire(case.spec)
        except ServerLost as exc:  # lost during an earlier suite of this config: `not run: ...`
            pytest.fail(f"{case.suite}[{case.key}]: {exc}", pytrace=False)
        except (ServerMismatch, NothingAnswers) as exc:  # attached: not the config's server, or none at all
            pytest.fail(f"{case.suite}[{case.key}]: {exc.detail}", pytrace=False)
        except HarnessError as exc:
            pytest.fail(f"{case.suite}[{case.key}]: server did not start: {exc}", pytrace=False)
        return HarnessRun(self, case, live, node)

    # -- a verdict row for every test -------------------------------------------------------------------------
    def record_error(self, nodeid: str, case: Case, reason: str, **extra: Any) -> None:
        """The report row of a test that ended without a verdict of its own (server lost, request failed,
        rejected before launch, interrupted): verdict `error`, the reason's first line, whatever was measured."""
        first = reason.strip().splitlines()[0] if reason.strip() else "error"
        row = {"nodeid": nodeid, "suite": case.suite, "case": case.key, "verdict": "error", "error": first, **extra}
        self._ensure_report().record_test(row)
        prefix = f"{case.suite}[{case.key}]: "
        self.verdict_lines.append(prefix + "ERROR: " + first.removeprefix(prefix))

    def record_unjudged(self, nodeid: str, case: Case, outcome: str, reason: str) -> None:
        """After a test's last phase: a row for it unless the harness already wrote one (plugin hook)."""
        if self._report is not None and self._report.has_test(nodeid):
            if outcome == "failed":  # failed after its row was written (e.g. recorded, then the test raised)
                self._report.mark_failed(nodeid, reason)
            return
        if outcome == "failed":
            self.record_error(nodeid, case, reason)
        elif outcome == "skipped":
            self._ensure_report().record_test(
                {"nodeid": nodeid, "suite": case.suite, "case": case.key, "verdict": "skipped", "skipped": reason}
            )
        else:  # a suite that passed without calling harness.check: say so rather than leave no trace
            self._ensure_report().record_test(
                {
                    "nodeid": nodeid,
                    "suite": case.suite,
                    "case": case.key,
                    "verdict": "pass",
                    "checks": [],
                    "notes": ["passed without a judged metric (the test did not call harness.check)"],
                }
            )

    def record_interrupt(self, how: str) -> None:
        """Rows for the running test and every test not reached when the session is stopped (Ctrl-C, SIGTERM)."""
        if self._report is None:
            return
        running, self.in_progress = self.in_progress, None
        if running is not None and not self._report.has_test(running[0]):
            nodeid, case = running
            self.record_error(nodeid, case, f"{case.suite}[{case.key}]: interrupted by {how}")
        for nodeid, case in self.planned_items:
            if not self._report.has_test(nodeid):
                self.record_error(
                    nodeid, case, f"{case.suite}[{case.key}]: not run: the session was interrupted by {how}"
                )

    def on_fatal_signal(self, signum: int) -> None:
        """SIGTERM/SIGHUP: the safety net has killed the servers; write the interrupted row and close the report."""
        import signal

        self.record_interrupt(f"{signal.Signals(signum).name} (servers killed, report closed)")
        if self._report is not None:
            self._report.close()

    def after_run(self) -> int | None:
        """After the report is closed: the run appended to the history (`<report dir>/history.sqlite`), the
        cross-config agreement of models with a `reference_config`
        (agreement.json), and this run against --harness-baseline (comparison.json); lines in the terminal
        summary. 1 when either found a worse row, else the baseline's status, or None."""
        if self._report is None:
            return None
        from harness.report.compare import Run, compare_runs, cross_config, release_verdict, write_comparison
        from harness.report.history import append_run

        append_run(
            self.run_dir.parent / "history.sqlite", self.run_dir
        )  # the nightly trend (python -m harness history)
        new, status = Run.load(self.run_dir), None
        try:
            models = self.thresholds.doc.models
        except ConfigError:  # a bad thresholds.yaml was already reported as the session's usage error
            models = {}
        references = {name: m.reference_config for name, m in models.items() if m.reference_config}
        agreement = cross_config(new, references)
        if agreement:
            verdict, status = release_verdict(agreement)
            write_comparison(self.run_dir / "agreement.json", new, new, agreement, verdict)
            self.verdict_lines += ["cross-config agreement:", *(r.line for r in agreement)]
        baseline, baseline_status = self.config.option.harness_baseline, None
        if baseline:
            base = Run.load(baseline)
            rows = compare_runs(base, new)
            release, baseline_status = release_verdict(rows)
            write_comparison(self.run_dir / "comparison.json", base, new, rows, release)
            self.verdict_lines += [f"baseline: {base.root}", *(r.line for r in rows), release]
        self._write_html()
        if not baseline:
            return 1 if status == 1 else None
        return 1 if 1 in (status, baseline_status) else baseline_status

    def _write_html(self) -> None:
        """report.html beside summary.md; a rendering bug costs the page, not the run's verdicts (said in the
        terminal)."""
        from harness.report.html import write_html

        try:
            path = write_html(self.run_dir, self.run_dir.parent / "history.sqlite")
            self.verdict_lines.append(f"HTML report: {path}")
        except Exception as exc:
            self.verdict_lines.append(f"HTML report not written: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self.interrupted:
            self.record_interrupt(self.interrupted)
        if self._pool is not None:
            self._pool.release()
        if self._report is not None:
            self._report.close()
        self._unregister_signal()


def _summarize_info(info: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "version",
        "page_size",
        "disable_radix_cache",
        "mamba_radix_cache_strategy",
        "mamba_track_interval",
        "speculative_algorithm",
        "tp_size",
        "dp_size",
        "ep_size",
        "pp_size",
        "dtype",
        "engine",
        "model_path",
    )
    return {key: info[key] for key in keys if key in info}
