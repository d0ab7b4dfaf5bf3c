"""The reference entries a new model starts with, per suite, and their YAML text.

`python -m harness init` (harness.config.scaffold) writes them with `value: null`; `--harness-update-thresholds`
(harness.config.update) writes them with measured values when a suite has no entry for the model yet. Measured
metrics (an accuracy, an accept length) start unmeasured; bounds and shift tests start at the values the committed
models use, with a provenance that says so.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

INIT = "python -m harness init"
UPDATE = "--harness-update-thresholds"
WRITTEN_KINDS = ("statistical", "min_ratio", "max_ratio")  # the kinds whose value is measured; bounds are set by hand


def update_command(suite: str, model: str, config: str) -> str:
    """The one command that measures a config's references and writes them (the 'no reference' errors name it)."""
    return f'pytest suites -k "test_{suite}[{model}/{config}]" {UPDATE}'


_ACCURACY = {"metric": "accuracy", "value": None, "n": None, "sigma": 0.5}
_HIT_SHIFT = {
    "metric": "hit_shift",
    "alpha": 0.01,
    "min_effect": 0.005,
    "provenance": "as the committed models' hit_shift (issue 12)",
}
_PARITY = [
    {"metric": "accuracy_gap", "alpha": 0.05, "min_effect": 0.01, "provenance": "0 expected, exact McNemar test"},
    {"metric": "answer_agreement", "min": 0.95, "provenance": "bf16 may flip near-tie answers"},
]
UNMEASURED = "not measured yet"
ACCURACY_SUITES = ("gsm8k", "mmmu", "video_mme", "lm_eval", "lmms_eval")


def _kl_div(numerics: Any) -> dict[str, Any]:
    if numerics.dtype == "float32":
        return {"metric": "kl_div", "max": 1.0e-6, "provenance": "fp32 replays exactly"}
    return {"metric": "kl_div", "max": 0.0025, "provenance": "as Qwen3-Next's bf16 bound (SGLang's tests)"}


def template_entries(suite: str, numerics: Any) -> list[dict[str, Any]]:
    """A new model's entries for `suite` on a config with these numerics (harness.config.checks.Numerics; not
    imported, to keep this module a leaf); [] for a suite set by hand
    (serving_perf: per GPU)."""
    if suite in ACCURACY_SUITES:
        return [dict(_ACCURACY, provenance=UNMEASURED)]
    if suite in ("logprob_prefill_cache_hit", "logprob_decode_cache_hit"):
        return [_kl_div(numerics), dict(_HIT_SHIFT)]
    if suite == "mm_prefix_cache":
        return [
            _kl_div(numerics),
            dict(_HIT_SHIFT),
            {"metric": "false_hits", "max": 0, "provenance": "zero false cache hits"},
            {"metric": "hit_rate", "min": 0.9, "provenance": "a repeated prompt hits unless evicted"},
        ]
    if suite == "prefix_branching":
        return [{"metric": "branch_mismatches", "max": 0, "provenance": "exact cache semantics"}]
    if suite == "spec_accept_length":
        algorithm = numerics.speculative_algorithm
        return [
            {
                "metric": "accept_length",
                "value": None,
                "n": None,
                "min_ratio": 0.95,
                **({"match": {"speculative_algorithm": algorithm}} if algorithm != "none" else {}),
                "provenance": UNMEASURED,
            }
        ]
    if suite in ("mmmu_parity", "video_mme_parity"):
        return [dict(e) for e in _PARITY]
    if suite == "video_mme_modes":
        return [{"metric": "answer_agreement", "min": 0.0, "provenance": "recorded, not gated"}]
    if suite == "hf_parity":
        return [{"metric": "greedy_agreement", "min": 0.9, "provenance": "as the canary's bf16 bound"}]
    return []


def scalar(value: Any, flow: bool = False) -> str:
    """One YAML scalar: null, a number PyYAML reads back as one, a string plain where it reads back the same in its
    context (a flow `[...]`/`{...}` when `flow`, where commas end it), else double-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return yaml_float(value)
    text = str(value)
    try:
        same = yaml.safe_load(f"[{text}]") == [text] if flow else yaml.safe_load(f"k: {text}") == {"k": text}
    except yaml.YAMLError:
        same = False
    if same and text == text.strip() and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def yaml_float(x: float) -> str:
    """A float PyYAML reads back as a float: 6 significant digits, always with a '.' (1e-05 is a string there)."""
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"refusing to write a non-finite value ({x}) into thresholds.yaml")
    mantissa, e, exponent = format(x, ".6g").partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + (e + exponent if e else "")


def entries_text(entries: list[dict[str, Any]], indent: int) -> str:
    """Block-style list items at `indent` spaces, one key a line (`match` as a flow mapping)."""
    lines = []
    for entry in entries:
        for i, (key, value) in enumerate(entry.items()):
            text = (
                "{" + ", ".join(f"{k}: {scalar(v, flow=True)}" for k, v in value.items()) + "}"
                if isinstance(value, dict)
                else scalar(value)
            )
            lines.append(" " * indent + ("- " if i == 0 else "  ") + f"{key}: {text}")
    return "\n".join(lines) + "\n"
