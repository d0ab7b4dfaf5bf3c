"""One test's run: the `harness` fixture a suite file gets (its client, its eval context, running the eval on the
shared server, and the verdict that ends the test)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.evals.types import EvalContext, EvalResult
from harness.serve.server import ServerLost
from harness.verdict.outcome import Outcome


class HarnessRun:
    """What a suite test gets: run an eval against the shared server, then judge and record it."""

    def __init__(self, session, case, live, node: pytest.Item):
        """`session`: the HarnessSession; `case`: the test's harness.serve.pool.Case; `live`: its LiveServer."""
        self.session, self.case, self.live, self.node = session, case, live, node
        self.samples_kept = 0  # per-sample records this test wrote to samples/*.jsonl

    @property
    def client(self):
        return self.live.client

    @property
    def server_info(self) -> dict[str, Any]:
        return self.live.info

    def context(self) -> EvalContext:
        opt = self.session.config.option
        report = self.session._ensure_report()
        sink = report.sample_sink(self.case.suite, self.case.spec.slug)

        def on_sample(record: dict) -> None:
            sink(record)
            self.samples_kept += 1

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
            on_sample=on_sample,
            reference=self.live.reference_client,
        )

    def run(self, eval_obj) -> EvalResult:
        started, counted = time.perf_counter(), self.live.client.stats.as_dict()  # the client is the server's, shared
        self.live.client.progress = None  # a verdict on a lost server quotes this eval's progress, not the last one's
        try:
            result = self.live.run(eval_obj(self.context()))
        except AssertionError as exc:
            # An eval that finds a bug mid-way (too few cache hits, wrong cached positions) raises with a
            # message; the partial numbers it attached still go into the report before the test fails.
            partial = getattr(exc, "result", None)
            self._record_failure(partial if isinstance(partial, EvalResult) else None, str(exc))
            pytest.fail(f"{self.case.suite}[{self.case.key}]: {exc}", pytrace=False)
        except ServerLost as exc:
            self._fail_lost(exc)
        except HarnessError as exc:  # a request that failed for good, a malformed answer, a field the server lacks
            message = f"{self.case.suite}[{self.case.key}]: {exc}"
            self.session.record_error(
                self.node.nodeid,
                self.case,
                message,
                samples_kept=self.samples_kept,
                client=self.live.client.stats.since(counted),
            )
            pytest.fail(message, pytrace=False)
        if self.live.attach_check is not None and self.live.attach_check.note:  # attached: what was not compared
            result.notes.append(f"{self.case.suite}[{self.case.key}]: {self.live.attach_check.note}")
        result.details.setdefault("wall_s", round(time.perf_counter() - started, 3))
        result.details.setdefault("client", self.live.client.stats.since(counted))
        return result

    def _fail_lost(self, exc: ServerLost) -> None:
        """One line for the running test (`... after 134 of 1319 samples: <cause>`), the log tail below it;
        the config's remaining tests then fail at once (`not run: ...`)."""
        progress = self.live.client.progress
        after = f" after {progress.done} of {progress.total} samples" if progress else ""
        cause = f": {exc.cause}" if exc.cause else ""
        message = f"{self.case.suite}[{self.case.key}]: {exc.what}{after}{cause}\n" + str(exc).partition("\n")[2]
        self.session.record_error(
            self.node.nodeid,
            self.case,
            message,
            samples_kept=self.samples_kept,
            exit_code=exc.exit_code,
            log=str(exc.log_path or ""),
            log_tail=exc.log_tail.splitlines()[-20:],
        )
        lost = type(exc)(
            f"{exc.what} during {self.case.suite}{after}",
            cause=exc.cause,
            exit_code=exc.exit_code,
            log_path=exc.log_path,
        )
        self.session.pool.mark_lost(self.case.spec, lost)
        pytest.fail(message.rstrip(), pytrace=False)

    def _record_failure(self, result: EvalResult | None, message: str) -> None:

        result = result or EvalResult(self.case.suite, {}, 0, {"samples_kept": self.samples_kept})
        checks = [{"metric": m, "observed": v, "bound": None, "passed": False} for m, v in result.metrics.items()]
        checks = checks or [{"metric": "-", "observed": None, "bound": None, "passed": False, "message": message}]
        outcome = Outcome(failures=[message], verdict="fail", checks=checks)
        self.session._ensure_report().record_test(outcome.as_record(self.node.nodeid, self.case, result))
        self.session.verdict_lines.append(f"{self.case.suite}[{self.case.key}]: FAILED: {message.splitlines()[0]}")

    def check(self, result: EvalResult) -> None:
        opt = self.session.config.option
        try:
            outcome = self.session.judge(self.case, result)
        except HarnessError as exc:  # e.g. --harness-update-thresholds refused: the measured numbers still go in
            message = f"{self.case.suite}[{self.case.key}]: {exc}"
            self._record_failure(result, message)
            pytest.fail(message, pytrace=False)
        self.session._ensure_report().record_test(outcome.as_record(self.node.nodeid, self.case, result))
        self.session.verdict_lines.extend(outcome.lines())
        if result.skipped:
            pytest.skip(f"{self.case.suite}[{self.case.key}]: {result.skipped}")
        if opt.harness_smoke or opt.harness_no_reference:
            return
        if outcome.failures:
            pytest.fail("\n".join([*outcome.failures, *result.notes]), pytrace=False)
