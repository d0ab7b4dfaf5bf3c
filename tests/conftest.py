"""Fixtures shared by the harness's own tests."""

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A random tiny Qwen2 and its trained tokenizer, built offline once per test session."""
    from harness.canary.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
