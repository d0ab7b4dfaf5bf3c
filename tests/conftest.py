"""Fixtures shared by the harness's own tests, and a report header saying whether the installed libraries are
the canary's (tests/test_canary.py warns as well where exact canary results depend on them)."""

import pytest

from harness.canary.versions import describe, installed_versions, recorded_versions

pytest_plugins = ["pytester"]


def pytest_report_header(config):
    return f"canary: {describe(recorded_versions(), installed_versions())}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A random tiny Qwen2 and its trained tokenizer, built offline once per test session."""
    from harness.canary.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
