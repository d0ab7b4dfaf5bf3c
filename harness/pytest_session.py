"""State of one pytest session of the harness: the matrix, the server pool, the report, the verdicts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from harness.client import ClientOptions
from harness.errors import ConfigError, HarnessError
from harness.report import Report, new_run_id
from harness.session import Case, PoolSettings, ServerPool
from harness.types import EvalContext, EvalResult


class HarnessSession:
    def __init__(self, config: pytest.Config):
        self.config = config
        opt = config.option
        self.root = Path(config.rootpath)
        self.run_dir = Path(self.root, opt.harness_report_dir, new_run_id())
        self._thresholds = None
        self._report: Report | None = None
        self.planned_keys: dict[str, int] = {}
        self.config_error: ConfigError | None = None
        self.verdict_lines: list[str] = []
        self._pool: ServerPool | None = None

    # -- configuration -------------------------------------------------------------------------------
    @property
    def thresholds_path(self) -> Path:
        return Path(self.root, self.config.option.harness_config)

    @property
    def thresholds(self):
        if self._thresholds is None:
            from harness.config import load_thresholds

            self._thresholds = load_thresholds(self.thresholds_path)
        return self._thresholds

    def cases_for(self, suite: str) -> list[Case]:
        from harness.config import KNOWN_SUITES

        if suite not in KNOWN_SUITES:
            from harness.errors import unknown_choice

            raise unknown_choice("suite", suite, KNOWN_SUITES, where="test function name")
        return [
            Case(spec=spec, suite=suite, options=options)
            for spec, options in self.thresholds.cases(suite)
        ]

    # -- servers and report --------------------------------------------------------------------------
    @property
    def report(self) -> Report | None:
        return self._report

    def _ensure_report(self) -> Report:
        if self._report is None:
            from harness.gpus import detect_gpus

            self._report = Report(self.run_dir, self.root, gpu_info=detect_gpus().as_dict())
        return self._report

    @property
    def pool(self) -> ServerPool:
        if self._pool is None:
            from harness.gpus import parse_gpu_option

            opt = self.config.option
            settings = PoolSettings(
                engine_override=None if opt.harness_engine in ("yaml", "attach") else opt.harness_engine,
                base_url=opt.harness_base_url if opt.harness_engine == "attach" or opt.harness_base_url else None,
                log_dir=self.run_dir / "logs",
                gpu_ids=tuple(parse_gpu_option(opt.harness_gpus)),
                client_options=ClientOptions(max_concurrency=opt.harness_concurrency),
                startup_timeout=opt.harness_startup_timeout,
            )
            if opt.harness_engine == "attach" and not settings.base_url:
                raise pytest.UsageError("--harness-engine attach needs --harness-base-url (or HARNESS_BASE_URL)")
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
            },
        )

    def run_for(self, case: Case, node: pytest.Item) -> HarnessRun:
        try:
            self.pool.preflight(case.spec)
        except HarnessError as exc:
            pytest.fail(f"{case.suite}[{case.key}]: rejected before launch: {exc}", pytrace=False)
        reason = self.pool.skip_reason(case.spec)
        if reason:
            self._ensure_report().record_test(
                {"nodeid": node.nodeid, "suite": case.suite, "case": case.key, "verdict": "skipped", "skipped": reason}
            )
            pytest.skip(reason)
        self._ensure_report()
        try:
            live = self.pool.acquire(case.spec)
        except HarnessError as exc:
            pytest.fail(f"{case.suite}[{case.key}]: server did not start: {exc}", pytrace=False)
        return HarnessRun(self, case, live, node)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.release()
        if self._report is not None:
            self._report.close()


def _summarize_info(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("version", "page_size", "disable_radix_cache", "mamba_radix_cache_strategy", "mamba_track_interval",
            "speculative_algorithm", "tp_size", "dp_size", "ep_size", "pp_size", "dtype", "engine", "model_path")
    return {key: info[key] for key in keys if key in info}


class HarnessRun:
    """What a suite test gets: run an eval against the shared server, then judge and record it."""

    def __init__(self, session: HarnessSession, case: Case, live, node: pytest.Item):
        self.session, self.case, self.live, self.node = session, case, live, node

    @property
    def client(self):
        return self.live.client

    @property
    def server_info(self) -> dict[str, Any]:
        return self.live.info

    def context(self) -> EvalContext:
        opt = self.session.config.option
        report = self.session._ensure_report()
        return EvalContext(
            client=self.live.client,
            case_id=self.case.key,
            server_info=self.live.info,
            options=self.case.options,
            model_path=self.case.spec.model_path,
            tokenizer_path=self.case.spec.tokenizer_path or self.case.spec.model_path,
            base_dir=str(self.session.thresholds_path.parent),
            limit=opt.harness_limit,
            smoke=opt.harness_smoke,
            on_sample=report.sample_sink(self.case.suite, self.case.spec.slug),
            reference=self.live.reference_client,
        )

    def run(self, eval_obj) -> EvalResult:
        started = time.perf_counter()
        try:
            result = self.live.run(eval_obj(self.context()))
        except AssertionError as exc:
            # An eval that finds a bug mid-way (too few cache hits, wrong cached positions) raises with a
            # message; the partial numbers it attached still go into the report before the test fails.
            partial = getattr(exc, "result", None)
            if isinstance(partial, EvalResult):
                self._record_failure(partial, str(exc))
            pytest.fail(f"{self.case.suite}[{self.case.key}]: {exc}", pytrace=False)
        result.details.setdefault("wall_s", round(time.perf_counter() - started, 3))
        result.details.setdefault("client", self.live.client.stats.as_dict())
        return result

    def _record_failure(self, result: EvalResult, message: str) -> None:
        from harness.judge import Outcome

        outcome = Outcome(failures=[message], verdict="fail",
                          checks=[{"metric": m, "observed": v, "bound": None, "passed": False}
                                  for m, v in result.metrics.items()])  # fmt: skip
        self.session._ensure_report().record_test(outcome.as_record(self.node.nodeid, self.case, result))
        self.session.verdict_lines.append(f"{self.case.suite}[{self.case.key}]: FAILED: {message.splitlines()[0]}")

    def check(self, result: EvalResult) -> None:
        from harness.judge import judge

        opt = self.session.config.option
        outcome = judge(self.session, self.case, result)
        self.session._ensure_report().record_test(outcome.as_record(self.node.nodeid, self.case, result))
        self.session.verdict_lines.extend(outcome.lines())
        if result.skipped:
            pytest.skip(f"{self.case.suite}[{self.case.key}]: {result.skipped}")
        if opt.harness_smoke or opt.harness_no_reference:
            return
        if outcome.failures:
            pytest.fail("\n".join(outcome.failures), pytrace=False)


__all__ = ["HarnessSession", "HarnessRun", "ConfigError"]
