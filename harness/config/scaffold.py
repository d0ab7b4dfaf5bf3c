"""`python -m harness init MODEL_PATH [--name NAME]`: a new model's entry in thresholds.yaml, from its config.json.

What the architecture needs, read from config.json (a VLM's `text_config` too):
- every model: a plain config (`tp<N>`, N from the weights' size) with gsm8k, and for a non-hybrid model the cache
  suites (logprob_prefill_cache_hit, logprob_decode_cache_hit, prefix_branching);
- hybrid / Mamba (linear-attention or SSM layers): a `tp<N>-extra-buffer` config (`--mamba-radix-cache-strategy
  extra_buffer`, as the committed Qwen3-Next configs) that runs the cache suites;
- MoE (more than one routed expert): a `tp<M>-ep<M>` config, M ≥ 2;
- MTP / NEXTN layers: a `tp<N>-mtp` config with SGLang's NEXTN flags (3 steps, top-k 1, 4 draft tokens) and
  spec_accept_length;
- VLM (`vision_config`): mmmu and mm_prefix_cache on the plain config.
`--engine hf` instead writes one `cpu` config for the HF reference engine. Each suite gets its template reference
entries (harness.config.templates; a measured value starts as `value: null`). The edit is validated (schema, suite
and reference checks) before thresholds.yaml is replaced; the launch lines are the shapes the real SGLang parsers
accept (tests/test_preflight_real.py checks the scaffold's).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.checks import config_numerics
from harness.config.templates import entries_text, scalar, template_entries
from harness.config.thresholds import load_thresholds, parse_thresholds, resolve_model_path
from harness.config.yaml_text import add_key
from harness.errors import ConfigError

HYBRID_MODEL_TYPES = ("qwen3_next", "qwen3_5", "qwen3_5_moe", "nemotron_h", "falcon_h1", "jamba", "mamba", "mamba2")
HYBRID_KEYS = ("linear_num_value_heads", "hybrid_override_pattern", "full_attention_interval", "mamba_d_state")
EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
MTP_KEYS = ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers")
GPU_WEIGHT_BYTES = 48 * 2**30  # weights one 80 GB GPU holds with room for the KV cache
CACHE_SUITES = ["logprob_prefill_cache_hit", "logprob_decode_cache_hit", "prefix_branching"]
EXTRA_BUFFER = ["--mamba-radix-cache-strategy", "extra_buffer", "--mamba-track-interval", "128"]
NEXTN = ["--speculative-algorithm", "NEXTN", "--speculative-num-steps", "3", "--speculative-eagle-topk", "1"]
NEXTN += ["--speculative-num-draft-tokens", "4"]


@dataclass(frozen=True)
class Architecture:
    """What config.json says about a model, as far as the configs to validate it go."""

    model_type: str
    dtype: str
    hybrid: bool
    moe: bool
    vlm: bool
    mtp: bool
    weight_bytes: int | None = None

    def describe(self) -> str:
        kinds = [k for k in ("hybrid", "moe", "vlm", "mtp") if getattr(self, k)]
        return f"{self.model_type or 'unknown'} ({', '.join(kinds) or 'dense'})"


def read_architecture(config: Mapping[str, Any], weight_bytes: int | None = None) -> Architecture:
    text = {**config, **(config.get("text_config") or {})}
    layer_types = [str(t) for t in text.get("layer_types") or []]
    model_type = str(text.get("model_type") or config.get("model_type") or "")
    hybrid = (
        model_type in HYBRID_MODEL_TYPES
        or any(text.get(k) for k in HYBRID_KEYS)
        or any(t not in ("full_attention", "sliding_attention", "attention") for t in layer_types)
    )
    dtype = str(text.get("torch_dtype") or text.get("dtype") or config.get("torch_dtype") or "bfloat16")
    return Architecture(
        model_type=model_type,
        dtype=dtype,
        hybrid=hybrid,
        moe=any((text.get(k) or 0) > 1 for k in EXPERT_KEYS),
        vlm="vision_config" in config,
        mtp=any((text.get(k) or 0) > 0 for k in MTP_KEYS),
        weight_bytes=weight_bytes,
    )


def load_config_json(model_path: str, base_dir: Path) -> tuple[dict[str, Any], int | None]:
    """config.json of a local directory (resolved as thresholds.yaml resolves `path`), or of a hub id through
    huggingface_hub; and the weights' size in bytes when it can be told."""
    resolved = resolve_model_path(model_path, base_dir)
    local = Path(resolved)
    if local.is_dir():
        file = local / "config.json"
        if not file.is_file():
            raise ConfigError(f"{local}: no config.json (init reads the model's architecture from it)")
        sizes = sum(p.stat().st_size for p in local.glob("*.safetensors")) or None
        return json.loads(file.read_text(encoding="utf-8")), sizes
    if os.path.isabs(os.path.expanduser(model_path)) or model_path.startswith((".", "~")):
        raise ConfigError(f"{model_path}: no such directory (resolved to {resolved})")
    try:
        from huggingface_hub import hf_hub_download

        file = hf_hub_download(model_path, "config.json")
    except Exception as exc:  # offline, gated or no such repo: say which model and why
        raise ConfigError(f"{model_path}: could not read config.json from the hub: {exc}") from exc
    return json.loads(Path(file).read_text(encoding="utf-8")), None


@dataclass
class Plan:
    """The model entry and reference entries `init` writes."""

    name: str
    path: str
    arch: Architecture
    engine: str = "sglang"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)


def plan_model(name: str, path: str, arch: Architecture, engine: str = "sglang", options=None) -> Plan:
    plan = Plan(name, path, arch, engine, dict(options or {}))
    base = ["gsm8k"] + (["mmmu", "mm_prefix_cache"] if arch.vlm else [])
    if engine == "hf":
        plan.configs["cpu"] = {"args": [], "gpus": 0, "suites": base}  # the reference engine: accuracy, no caches
        return plan
    n = _tp_size(arch.weight_bytes)
    tp = ["--tp-size", str(n)] if n > 1 else []
    plan.configs[f"tp{n}"] = {"args": tp, "gpus": n, "suites": base + ([] if arch.hybrid else CACHE_SUITES)}
    hybrid_args = EXTRA_BUFFER if arch.hybrid else []
    if arch.hybrid:
        plan.configs[f"tp{n}-extra-buffer"] = {"args": tp + EXTRA_BUFFER, "gpus": n, "suites": ["gsm8k", *CACHE_SUITES]}
    if arch.moe:
        m = max(2, n)
        plan.configs[f"tp{m}-ep{m}"] = {
            "args": ["--tp-size", str(m), "--ep-size", str(m), *hybrid_args],
            "gpus": m,
            "suites": ["gsm8k"],
        }
    if arch.mtp:
        plan.configs[f"tp{n}-mtp"] = {
            "args": tp + NEXTN + hybrid_args,
            "gpus": n,
            "suites": ["gsm8k", "spec_accept_length"],
        }
    return plan


def _tp_size(weight_bytes: int | None) -> int:
    if not weight_bytes:
        return 1
    return 2 ** max(0, math.ceil(math.log2(max(1.0, weight_bytes / GPU_WEIGHT_BYTES))))


def model_text(plan: Plan, indent: int) -> str:
    pad = " " * (indent + 2)
    lines = [f"{pad}path: {scalar(plan.path)}"]
    if plan.engine != "sglang":
        lines.append(f"{pad}engine: {plan.engine}")
    lines.append(f"{pad}dtype: {plan.arch.dtype}")
    lines.append(f"{pad}description: {scalar(f'{plan.arch.describe()}; scaffolded by python -m harness init')}")
    if plan.options:
        lines.append(f"{pad}options:")
        for suite, opts in plan.options.items():
            lines.append(f"{pad}  {suite}: {{{', '.join(f'{k}: {scalar(v, flow=True)}' for k, v in opts.items())}}}")
    lines.append(f"{pad}configs:")
    for config, c in plan.configs.items():
        lines.append(f"{pad}  {config}:")
        lines.append(f"{pad}    args: [{', '.join(scalar(a, flow=True) for a in c['args'])}]")
        lines.append(f"{pad}    gpus: {c['gpus']}")
        lines.append(f"{pad}    suites: [{', '.join(c['suites'])}]")
    return "\n".join(lines) + "\n"


def write_scaffold(thresholds_path: str | os.PathLike[str], plan: Plan) -> list[str]:
    """Add the model and its reference entries to thresholds.yaml; returns what was added, one line each."""
    current = load_thresholds(thresholds_path)
    if plan.name in current.doc.models:
        raise ConfigError(f"{current.source}: models.{plan.name} already exists; pick another --name")
    text = Path(thresholds_path).read_text(encoding="utf-8")
    text = add_key(text, current.source, ("models",), plan.name, lambda indent: model_text(plan, indent))
    with_model = parse_thresholds(text, current.path, current.source)
    added = [f"models.{plan.name}: {plan.arch.describe()}, configs {', '.join(plan.configs)}"]
    for suite in dict.fromkeys(s for c in plan.configs.values() for s in c["suites"]):
        if with_model.doc.references.get(suite, {}).get(plan.name):
            continue
        entries: list[dict[str, Any]] = []
        for c in plan.configs.values():
            if suite in c["suites"]:
                numerics = config_numerics(c["args"], plan.arch.dtype, None, None)
                entries += [e for e in template_entries(suite, numerics) if e not in entries]
        if entries:
            text = add_key(
                text, current.source, ("references", suite), plan.name, lambda i, e=entries: entries_text(e, i + 2)
            )
            added.append(f"references.{suite}.{plan.name}: {', '.join(e['metric'] for e in entries)}")
    parse_thresholds(text, current.path, current.source)  # validated before the file is replaced
    tmp = Path(thresholds_path).with_name(Path(thresholds_path).name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, thresholds_path)
    return added


def scaffold_model(
    thresholds_path: str, model_path: str, name: str | None, engine: str = "sglang", options: list[str] = ()
) -> list[str]:
    """`python -m harness init`: read the model's config.json, write its entry and references; the lines to print,
    ending with the command that measures the references."""
    import yaml

    from harness.config.templates import UPDATE

    base = Path(thresholds_path).resolve().parent
    local = Path(model_path).expanduser()
    path = os.path.relpath(os.path.abspath(local), base) if local.is_dir() else model_path
    config, weight_bytes = load_config_json(path, base)
    name = name or _name_from(model_path)
    suite_options: dict[str, dict[str, Any]] = {}
    for option in options:
        key, eq, value = option.partition("=")
        suite, dot, knob = key.partition(".")
        if not (eq and dot and suite and knob):
            raise ConfigError(f"--option {option!r}: expected SUITE.KEY=VALUE, e.g. gsm8k.limit=200")
        suite_options.setdefault(suite, {})[knob] = yaml.safe_load(value)
    plan = plan_model(name, path, read_architecture(config, weight_bytes), engine, suite_options)
    added = write_scaffold(thresholds_path, plan)
    return [*added, f"next: measure its references from a full run: pytest suites -k {name} {UPDATE}"]


def _name_from(model_path: str) -> str:
    stem = Path(model_path.rstrip("/")).name.lower()
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip("-._") or "model"
