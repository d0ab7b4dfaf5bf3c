"""What a config's numerics are, which reference entries fit them, and thresholds.yaml's cross-checks.

Numerics are read from the SGLang server args a config passes (`--dtype`, `--quantization`,
`--kv-cache-dtype`, `--speculative-algorithm`, in `--flag value` or `--flag=value` form), falling back
to the model's declared defaults. The cross-checks run after the schema has validated types and catch
what a schema cannot: names that refer to nothing, suites listed twice, entries that mix statistical
and bound keys, and entries an earlier one shadows. Each returns messages in the form
`FILE: key.path: problem` so `harness.config.thresholds` can raise them together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.config.metrics import METRICS
from harness.config.schema import BOUND_KEYS
from harness.config.spec import KIND_ROLES
from harness.config.suites import option_problems
from harness.errors import unknown_choice

if TYPE_CHECKING:
    from harness.config.schema import ReferenceEntry, ThresholdsDoc

DTYPES = ("auto", "bfloat16", "float16", "float32")
SPECULATIVE_ALGORITHMS = ("none", "EAGLE", "EAGLE3", "NEXTN", "STANDALONE", "NGRAM", "DFLASH", "DSPARK", "SUFFIX")
_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
_DEFAULTS = {"dtype": "auto", "quantization": "none", "kv_cache_dtype": "auto", "speculative_algorithm": "none"}
# argparse accepts unambiguous prefixes; `--speculative-algo` is the one SGLang's own cookbook uses.
_FLAGS = {
    "--dtype": "dtype",
    "--quantization": "quantization",
    "--kv-cache-dtype": "kv_cache_dtype",
    "--speculative-algorithm": "speculative_algorithm",
    "--speculative-algo": "speculative_algorithm",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class Numerics:
    """What can move a config's scores; parallelism deliberately is not here."""

    dtype: str
    quantization: str
    kv_cache_dtype: str
    speculative_algorithm: str

    def describe(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)}" for k in _DEFAULTS)


def normalize(key: str, value: Any) -> str:
    """One spelling per value: bf16 -> bfloat16, nextn -> NEXTN, null -> the default."""
    if value is None:
        return _DEFAULTS[key]
    text = str(value).strip()
    if key == "speculative_algorithm":
        return "none" if text.lower() == "none" else text.upper()
    text = text.lower()
    return _DTYPE_ALIASES.get(text, text) if key == "dtype" else text


def config_numerics(
    args: Sequence[str], dtype: str | None, quantization: str | None, kv_cache_dtype: str | None
) -> Numerics:
    """A config's numerics: its server args first, then the model's defaults."""
    found = {"dtype": dtype, "quantization": quantization, "kv_cache_dtype": kv_cache_dtype}
    for i, arg in enumerate(args):
        flag, eq, inline = arg.partition("=")
        if flag in _FLAGS:
            found[_FLAGS[flag]] = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
    return Numerics(**{key: normalize(key, found.get(key)) for key in _DEFAULTS})


def matches(match: Any, numerics: Numerics) -> bool:
    """True when every key the entry's `match` sets equals the config's value (unset keys match any)."""
    wanted = match.model_dump(exclude_none=True)
    wanted.pop("gpu", None)  # matched against the run's GPU by the caller (Thresholds.find_reference)
    return all(normalize(k, v) == getattr(numerics, k) for k, v in wanted.items())


def same_match(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> bool:
    """True when `earlier` matches every config `later` does: its set keys are a subset, with equal values."""
    return all(
        v is None or (later.get(k) is not None and normalize(k, v) == normalize(k, later[k]))
        for k, v in earlier.items()
    )


def match_problems(keys: Mapping[str, Any], where: str) -> list[str]:
    """Unknown dtype or speculative algorithm names in a `match` (or a model's dtype)."""
    problems = []
    choices = {"dtype": DTYPES, "speculative_algorithm": SPECULATIVE_ALGORITHMS}
    for key, valid in choices.items():
        value = keys.get(key)
        if value is not None and normalize(key, value) not in valid:
            what = key.replace("_", " ")
            problems.append(str(unknown_choice(what, str(value), valid, f"{where}.{key}")))
    return problems


def model_problems(doc: ThresholdsDoc, source: str, suites: Iterable[str]) -> list[str]:
    """Names, suites and options of every model and config."""
    suites, problems = tuple(suites), []
    for model_name, model in doc.models.items():
        where = f"{source}: models.{model_name}"
        problems += _name_problems("model", model_name, where)
        problems += match_problems({"dtype": model.dtype}, where)
        run_by_some_config: set[str] = set()
        for config_name, config in model.configs.items():
            config_where = f"{where}.configs.{config_name}"
            problems += _name_problems("config", config_name, config_where)
            listed: set[str] = set()
            for i, suite in enumerate(config.suites):
                if suite not in suites:
                    problems.append(str(unknown_choice("suite", suite, suites, f"{config_where}.suites[{i}]")))
                elif suite in listed:
                    problems.append(f"{config_where}.suites[{i}]: suite {suite!r} listed twice")
                listed.add(suite)
            run_by_some_config |= listed
            problems += option_problems(config.options, f"{config_where}.options")
            if config.deployment is not None:
                declared = config.deployment
                problems += deployment_problems(
                    declared.kind, [m.role for m in declared.members], f"{config_where}.deployment"
                )
            for suite in sorted(set(config.options) & set(suites) - listed):
                problems.append(
                    f"{config_where}.options.{suite}: options for suite {suite!r}, which this config does not run"
                    f" (its suites: {', '.join(config.suites)})"
                )
        problems += option_problems(model.options, f"{where}.options")
        for i, name in enumerate(model.reference_config):
            if name not in model.configs:
                problems.append(str(unknown_choice("config", name, model.configs, f"{where}.reference_config[{i}]")))
        for suite in sorted(set(model.options) & set(suites) - run_by_some_config):
            problems.append(f"{where}.options.{suite}: options for suite {suite!r}, which no config of this model runs")
    return problems


def _name_problems(what: str, name: str, where: str) -> list[str]:
    if _NAME.fullmatch(name):
        return []
    return [
        f"{where}: invalid {what} name {name!r}: use letters, digits, '.', '_' and '-' (it appears in test ids"
        " like gsm8k[model/config])"
    ]


def reference_problems(doc: ThresholdsDoc, source: str, suites: Iterable[str]) -> list[str]:
    """Suite and model names under `references`, each entry's keys, and shadowed entries."""
    suites, problems = tuple(suites), []
    for suite, by_model in doc.references.items():
        if suite not in suites:
            problems.append(str(unknown_choice("suite", suite, suites, f"{source}: references.{suite}")))
            continue
        for model_name, entries in by_model.items():
            where = f"{source}: references.{suite}.{model_name}"
            if model_name not in doc.models:
                problems.append(str(unknown_choice("model", model_name, doc.models, where)))
                continue
            for i, entry in enumerate(entries):
                problems += _entry_problems(entry, f"{where}[{i}]")
                shadow = next((j for j in range(i) if _shadows(entries[j], entry)), None)
                if shadow is not None:
                    problems.append(
                        f"{where}[{i}]: can never match: references.{suite}.{model_name}[{shadow}] ({entry.metric},"
                        f" match {entries[shadow].match.describe()}) already matches every config it would;"
                        " put the more specific entry first"
                    )
    return problems


def _shadows(earlier: ReferenceEntry, later: ReferenceEntry) -> bool:
    return earlier.metric == later.metric and same_match(earlier.match.model_dump(), later.match.model_dump())


def _entry_problems(entry: ReferenceEntry, where: str) -> list[str]:
    if entry.metric not in METRICS:
        return [str(unknown_choice("metric", entry.metric, METRICS, f"{where}.metric"))]
    info = METRICS[entry.metric]
    problems = match_problems(entry.match.model_dump(), f"{where}.match")
    if info.shift or entry.min_effect is not None:
        return problems + _shift_entry_problems(entry, where, info.shift)
    bounds = [k for k in BOUND_KEYS if getattr(entry, k) is not None]
    if len(bounds) > 1:
        return problems + [f"{where}: give one of max, min, min_ratio, max_ratio; this entry has {', '.join(bounds)}"]
    if bounds:
        statistical_keys = [k for k in ("sigma", "alpha", "beta", "higher_is_better") if getattr(entry, k) is not None]
        if statistical_keys:
            problems.append(
                f"{where}: {', '.join(statistical_keys)} only apply to statistical entries (value, n, sigma);"
                f" this entry is a bound ({bounds[0]})"
            )
        wanted = "min" if info.higher_is_better else "max"
        if not bounds[0].startswith(wanted):
            direction = "higher" if info.higher_is_better else "lower"
            problems.append(
                f"{where}: {entry.metric} is {direction}-is-better, so its bound is a {wanted}, not {bounds[0]}"
            )
    elif entry.sigma is None:
        problems.append(
            f"{where}: missing required key 'sigma' for a statistical entry (the per-sample standard deviation;"
            " 0.5 is the Bernoulli worst case), or give max/min for a plain bound"
        )
    if not bounds and (entry.value is None) != (entry.n is None):
        problems.append(f"{where}: give value and n together (both null marks a reference not measured yet)")
    if info.proportion and entry.value is not None and not 0.0 <= entry.value <= 1.0:
        problems.append(f"{where}.value: {entry.metric} is a proportion in [0, 1], got {entry.value!r}")
    if info.proportion and entry.sigma is not None and entry.sigma > 0.5:
        problems.append(f"{where}.sigma: the σ of a proportion is at most 0.5 (at p = 0.5), got {entry.sigma!r}")
    if entry.per_question is not None and (bounds or not info.proportion):
        problems.append(
            f"{where}.per_question: only a statistical entry of a proportion (an accuracy) has per-question records"
        )
    return problems


def _shift_entry_problems(entry: ReferenceEntry, where: str, is_shift: bool) -> list[str]:
    """A shift metric (0 expected) takes alpha, beta and min_effect, and nothing that names a value."""
    if not is_shift:
        shifts = ", ".join(name for name, m in METRICS.items() if m.shift)
        return [f"{where}: min_effect only applies to shift metrics ({shifts}), not {entry.metric}"]
    wrong = [k for k in ("value", "n", "sigma", "higher_is_better", *BOUND_KEYS) if getattr(entry, k) is not None]
    if wrong:
        return [
            f"{where}: {entry.metric} is a shift tested against 0 (keys: alpha, beta, min_effect); "
            f"{', '.join(wrong)} do not apply"
        ]
    return []


def deployment_problems(kind: str, roles: list[str], where: str) -> list[str]:
    """What is wrong with a declared deployment's kind and roles (`where` is its key path)."""
    if kind not in KIND_ROLES:
        return [str(unknown_choice("deployment kind", kind, KIND_ROLES, where=f"{where}.kind"))]
    allowed, out = KIND_ROLES[kind], []
    if allowed is None:
        return []
    for i, role in enumerate(roles):
        if role not in allowed:
            out.append(str(unknown_choice(f"{kind} member role", role, allowed, where=f"{where}.members[{i}].role")))
    if out:
        return out
    expected = {
        "epd": "one or more encoder members, then one language member",
        "pd": "one prefill, one decode and one router member, in that order",
    }[kind]
    encoders = [r for r in roles if r == "encoder"]
    shape_ok = (
        (roles == encoders + ["language"] and encoders) if kind == "epd" else roles == ["prefill", "decode", "router"]
    )
    if not shape_ok:
        out.append(f"{where}.members: roles {roles}; a {kind} deployment needs {expected}")
    return out
