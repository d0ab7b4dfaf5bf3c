"""The suite registry, and the per-suite knobs (`options:`) a model or config sets in thresholds.yaml.

Each eval module owns its knobs: a module-level `OPTIONS` dict (knob -> default) beside the code that
reads them, so names and defaults live in one place. This module maps suite names to those modules
(`SUITE_EVALS`, the single registry of suite names) and checks a file's `options:` against them at
load time, so a misspelt knob fails with its key path before any server starts. A suite whose eval
module does not exist yet accepts any knobs; its eval checks them when it is written.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from harness.errors import unknown_choice

SUITE_EVALS: dict[str, str] = {
    "gsm8k": "harness.evals.gsm8k",
    "logprob_prefill_cache_hit": "harness.evals.logprob_prefill_cache_hit",
    "logprob_decode_cache_hit": "harness.evals.logprob_decode_cache_hit",
    "prefix_branching": "harness.evals.prefix_branching",
    "spec_accept_length": "harness.evals.spec_accept_length",
    "hf_parity": "harness.evals.hf_parity",
    "mmmu": "harness.evals.mmmu",
    "mmmu_parity": "harness.evals.mmmu_parity",
    "mm_prefix_cache": "harness.evals.mm_prefix_cache",
    "video_mme": "harness.evals.video_mme",
    "video_mme_modes": "harness.evals.video_mme_modes",
    "video_mme_parity": "harness.evals.video_mme_parity",
    "serving_perf": "harness.evals.serving_perf",
    "lm_eval": "harness.evals.lm_eval_suite",
    "lmms_eval": "harness.evals.lmms_eval_suite",
}
SUITES: tuple[str, ...] = tuple(SUITE_EVALS)


def suite_option_defaults(suite: str) -> Mapping[str, Any] | None:
    """The eval's `OPTIONS` (knob -> default), or None while the suite has no eval module yet."""
    module_name = SUITE_EVALS[suite]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:  # not written yet; any other missing module is a real error
            return None
        raise
    return getattr(module, "OPTIONS", None)


def option_problems(options: Mapping[str, Mapping[str, Any]], where: str) -> list[str]:
    """Unknown suites, unknown knobs and knobs of the wrong kind under one `options:` mapping."""
    problems = []
    for suite, knobs in options.items():
        if suite not in SUITE_EVALS:
            problems.append(str(unknown_choice("suite", suite, SUITES, where)))
            continue
        defaults = suite_option_defaults(suite)
        if defaults is None:
            continue
        for key, value in knobs.items():
            if key not in defaults:
                problems.append(str(unknown_choice("key", key, defaults, f"{where}.{suite}")))
            elif not _same_kind(value, defaults[key]):
                problems.append(
                    f"{where}.{suite}.{key}: expected {_kind(defaults[key])} like the default"
                    f" {defaults[key]!r}, got {value!r}"
                )
    return problems


def _same_kind(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _kind(default: Any) -> str:
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    return names.get(type(default), type(default).__name__)
