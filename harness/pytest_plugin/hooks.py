"""The pytest plugin: `--harness-*` options, the matrix from thresholds.yaml, and the shared server fixture.

Tests named `test_<suite>` that take the `harness` fixture are parametrized over every (model, config) of
thresholds.yaml that lists that suite, with ids `model/config` (`test_gsm8k[canary/cpu]`), so `-k canary`,
`-k mtp` or `-k qwen3_next` select naturally. Items are grouped so each server starts once for all its
suites and stops after the last of them, before the next server starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.pytest_plugin.startup import OWN_JUNIT, check_model_paths, check_options, parse_shard, usage_error

HARNESS_KEY = pytest.StashKey["HarnessSession"]()
ENGINE_CHOICES = ("yaml", "sglang", "hf", "vllm", "attach")
MARKER_KWARGS = ("suite",)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "SGLang validation harness")
    add = group.addoption
    add(
        "--harness-config",
        default=None,
        help="Matrix and references file, relative to the working directory. Default: thresholds.yaml in the rootdir",
    )
    add(
        "--harness-engine",
        choices=ENGINE_CHOICES,
        default="yaml",
        help="Engine for every selected config; 'yaml' uses each config's own. Default: %(default)r",
    )
    add(
        "--harness-base-url",
        default=os.environ.get("HARNESS_BASE_URL"),
        help="Attach to a running server instead of launching (env HARNESS_BASE_URL). Default: %(default)r",
    )
    add("--harness-report-dir", default="reports", help="Where reports/<run-id>/ is written. Default: %(default)r")
    add(
        "--harness-limit",
        type=int,
        default=None,
        help="Evaluate a deterministic subsample of N items per suite. Default: %(default)r (all)",
    )
    add(
        "--harness-smoke",
        action="store_true",
        default=False,
        help="Run a few samples per suite and assert nothing (tests the code path). Default: %(default)r",
    )
    add(
        "--harness-no-reference",
        action="store_true",
        default=False,
        help="Record observed values without judging them. Default: %(default)r",
    )
    add(
        "--harness-update-thresholds",
        action="store_true",
        default=False,
        help="Measure references from a full run: create or update entries (value, n, sigma, provenance). "
        "Default: %(default)r",
    )
    add(
        "--harness-gpus",
        default=None,
        help="GPU ids ('0,1,2,3') or a count; configs needing more are skipped. Default: %(default)r (detect)",
    )
    add(
        "--harness-startup-timeout",
        type=float,
        default=None,
        help="Seconds to wait for a server to become healthy. Default: %(default)r (per engine)",
    )
    add("--harness-concurrency", type=int, default=64, help="Concurrent requests per server. Default: %(default)r")
    add(
        "--harness-request-timeout",
        type=float,
        default=600.0,
        help="Seconds one request may go unanswered before the server is probed and the test errors "
        "(a timeout is not retried). Default: %(default)r",
    )
    add(
        "--harness-baseline",
        default=None,
        metavar="RUN_DIR",
        help="Compare this run with a baseline run (reports/<run-id>/) question by question at the end; a worse "
        "row fails the session (harness.report.compare). Default: %(default)r (none)",
    )
    add(
        "--harness-shard",
        default=None,
        metavar="I/N",
        help="Run only servers whose index in the collected matrix is I modulo N (0-based), for sharded CI; "
        "a server's suites never split across shards. Default: %(default)r (all)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "harness(suite=NAME): run this test as suite NAME over the matrix")
    from harness.config.update import refuse_partial_update
    from harness.pytest_plugin.session import HarnessSession

    opt = config.option
    try:  # a limited or smoke run never writes a reference
        refuse_partial_update(opt.harness_update_thresholds, opt.harness_limit, opt.harness_smoke)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None

    check_options(config)
    config.stash[HARNESS_KEY] = HarnessSession(config)
    if _runs_suites(config) and not config.option.xmlpath and not config.option.collectonly:
        config.option.xmlpath = config.stash[OWN_JUNIT] = str(config.stash[HARNESS_KEY].run_dir / "junit.xml")


def pytest_report_header(config: pytest.Config) -> str | None:
    """On suite runs: whether the installed libraries are the canary's (its exact numbers depend on them)."""
    from harness.report.versions import CANARY_MANIFEST, describe, installed_versions, recorded_versions

    if not _runs_suites(config) or not CANARY_MANIFEST.exists():
        return None
    return f"canary: {describe(recorded_versions(), installed_versions())}"


def _runs_suites(config: pytest.Config) -> bool:
    suites_dir = Path(config.rootpath, "suites").resolve()
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if path == suites_dir or suites_dir in path.parents:
            return True
    return False


def suite_of(definition) -> str:
    marker = definition.get_closest_marker("harness") if hasattr(definition, "get_closest_marker") else None
    if marker is not None:
        unknown = set(marker.kwargs) - set(MARKER_KWARGS)
        if unknown or marker.args:
            bad = sorted(unknown) or [repr(a) for a in marker.args]
            raise ConfigError(
                f"{definition.nodeid}: @pytest.mark.harness got unexpected {', '.join(bad)}; "
                f"valid keyword: {', '.join(MARKER_KWARGS)}"
            )
        if "suite" in marker.kwargs:
            return marker.kwargs["suite"]
    return definition.name.split("[")[0].removeprefix("test_")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "harness" not in metafunc.fixturenames:
        return
    session = metafunc.config.stash[HARNESS_KEY]
    try:
        cases = session.cases_for(suite_of(metafunc.definition))
    except ConfigError as exc:
        # Raised again outside the collectors (pytest_collection_modifyitems) so pytest prints one clear
        # `ERROR:` line and exits with USAGE_ERROR instead of a collection traceback per file.
        session.config_error = exc
        return
    if not cases:  # one readable skip instead of pytest's "got empty parameter set"
        reason = f"no config in {session.thresholds.source} runs suite {suite_of(metafunc.definition)!r}"
        metafunc.parametrize("harness_case", [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="none")])
        return
    metafunc.parametrize("harness_case", cases, ids=[case.spec.id for case in cases])


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]):
    """Before the other plugins: the config error, and model/config names as -k keywords. After them (so -k and
    -m have deselected): the order by server, the error-control family, then the shard split."""
    harness = config.stash[HARNESS_KEY]
    if harness.config_error is not None:
        raise usage_error(config, str(harness.config_error))  # printed once; the run leaves no report directory
    for item in items:
        case = _case_of(item)
        if case is not None:
            for name in (case.spec.model, case.spec.config):
                item.extra_keyword_matches.add(name.replace("-", "_").replace(".", "_"))
    result = yield
    order: dict[str, int] = {}
    for item in items:
        case = _case_of(item)
        if case is not None:
            order.setdefault(case.key, len(order))
    # Stable: tests keep their relative order within a server; servers keep first-appearance order.
    items.sort(key=lambda item: order.get(getattr(_case_of(item), "key", None), -1))
    harness.plan_family([case for case in map(_case_of, items) if case is not None])  # all shards: one family
    shard = parse_shard(config.option.harness_shard)
    if shard is not None:
        index, count = shard
        keep = [i for i in items if _case_of(i) is None or order[_case_of(i).key] % count == index]
        dropped = [i for i in items if i not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    check_model_paths(harness, [case for case in map(_case_of, items) if case is not None])
    harness.planned_keys = order
    return result


def pytest_collection_finish(session: pytest.Session) -> None:
    """What will run, after every deselection (-k, -m, shards): the tests an interrupt reports as not run."""
    harness = session.config.stash[HARNESS_KEY]
    harness.planned_items = [(item.nodeid, _case_of(item)) for item in session.items if _case_of(item) is not None]


def _case_of(item: pytest.Item):
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("harness_case") if callspec is not None else None
    return case if hasattr(case, "spec") else None  # None: the skip of a suite no config runs


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    case = _case_of(item)
    if case is None:
        return
    next_case = _case_of(nextitem) if nextitem is not None else None
    if next_case is None or next_case.key != case.key:
        item.config.stash[HARNESS_KEY].pool.release()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """Track the running test, so an interrupt (Ctrl-C, SIGTERM) still writes its row."""
    harness, case = item.config.stash[HARNESS_KEY], _case_of(item)
    harness.in_progress = (item.nodeid, case) if case is not None else None
    result = yield  # an interrupt raises here and leaves `in_progress` set for sessionfinish
    harness.in_progress = None
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Every harness test gets a report row, also one that errored before or outside `harness.check`."""
    report = yield
    case = _case_of(item)
    last_phase = call.when == "call" or (call.when == "setup" and not report.passed)
    if case is not None and last_phase:
        reason = ""
        if call.excinfo is not None:
            reason = call.excinfo.exconly().removeprefix("Failed: ")
            if call.excinfo.errisinstance(pytest.skip.Exception):
                reason = str(call.excinfo.value.msg)
        item.config.stash[HARNESS_KEY].record_unjudged(item.nodeid, case, report.outcome, reason)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    harness = session.config.stash.get(HARNESS_KEY, None)
    if harness is not None:
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            harness.interrupted = "Ctrl-C (KeyboardInterrupt)"
        harness.close()
        if harness.after_run() == 1 and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    harness = config.stash.get(HARNESS_KEY, None)
    if harness is not None and harness.report is not None:
        terminalreporter.write_sep("-", "harness report")
        terminalreporter.write_line(f"report: {harness.run_dir}")
        for line in harness.verdict_lines:
            terminalreporter.write_line(line)


@pytest.fixture
def harness(request: pytest.FixtureRequest, harness_case):
    """The server of this test's (model, config), started once and shared, plus run/check helpers."""
    session = request.config.stash[HARNESS_KEY]
    return session.run_for(harness_case, request.node)
