"""Fixtures shared by the harness's own tests, and a report header saying whether the installed libraries are
the canary's (tests/test_canary.py warns as well where exact canary results depend on them)."""

import signal

import pytest

from harness.report.versions import describe, installed_versions, recorded_versions

pytest_plugins = ["pytester"]


def pytest_configure(config):
    # A script that starts a job with `cmd &` (no job control) makes it ignore SIGINT, and an ignored signal stays
    # ignored across exec: the inner pytests the interrupt tests send Ctrl-C to would never see it (seen when CI was
    # started that way). Those tests are about what the harness does when SIGINT arrives, so restore the default.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_report_header(config):
    return f"canary: {describe(recorded_versions(), installed_versions())}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A random tiny Qwen2 and its trained tokenizer, built offline once per test session."""
    from canary.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
