"""What a deployment is and what it launches: one config served by several processes, in order.

A config of thresholds.yaml may declare `deployment: {kind, members}` instead of being one server. Each member
is a server of its own (its own process group, port, log file `<model>__<config>.<role>.log`, health check and
GPU ids: indices into the GPUs the config gets); the suites talk to the front member, the last one. Kinds:

- `epd` (encode / language disaggregation, SGLang >= 0.5.7): `encoder` members first (`--encoder-only`, health
  `/health`: an encoder serves no generation and no /server_info), then one `language` member
  (`--language-only`), which the harness gives `--encoder-urls` with the encoders' URLs. SGLang serves split only
  for some architectures (`EPD_ARCHITECTURES`, from 0.5.17's `_handle_encoder_disaggregation`): the preflight
  reads the checkpoint's config.json and refuses the others.
- `pd` (prefill / decode disaggregation): a `prefill` member (`--disaggregation-mode prefill` and a bootstrap
  port), a `decode` member (`--disaggregation-mode decode`), then the `router` front
  (`python -m sglang_router.launch_router --pd-disaggregation --mini-lb --prefill URL PORT --decode URL`). Its
  KV moves through `--disaggregation-transfer-backend` (default mooncake); where that backend's package is
  missing the config is skipped with the reason (`fake` moves no KV, so it is refused: answers would be noise).
- `group`: members started in order with nothing wired between them (a sidecar, or the harness's own lifecycle
  tests with HF-engine members).

The member launch lines are what `launch_lines` returns, so the preflight and the real-parser test
(tests/test_preflight_real.py) check exactly what is launched (wiring URLs as placeholders). `Deployment` has
the `Server` interface the session uses (base_url, info, exit_status, died, health, log_tail, stop): a member
that exits while the suites run is named in the verdict (`member 'encoder' of the epd deployment exited ...`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

from harness.config.spec import DeploymentSpec, ServerSpec
from harness.errors import ConfigError

EPD_ARCHITECTURES = (
    "Qwen2VLForConditionalGeneration",
    "Qwen2_5_VLForConditionalGeneration",
    "Qwen3VLForConditionalGeneration",
    "Qwen3VLMoeForConditionalGeneration",
    "Qwen3_5ForConditionalGeneration",
    "Qwen3_5MoeForConditionalGeneration",
    "InternS2PreviewForConditionalGeneration",
    "Qwen3OmniMoeForConditionalGeneration",
    "Qwen2AudioForConditionalGeneration",
    "Qwen2_5OmniModel",
    "KimiVLForConditionalGeneration",
    "KimiK25ForConditionalGeneration",
    "KimiK3ForConditionalGeneration",
    "MiMoV2ForCausalLM",
)
# --disaggregation-transfer-backend -> the Python module it needs, and the pip package that has it
TRANSFER_MODULES = {
    "mooncake": ("mooncake", "mooncake-transfer-engine"),
    "mooncake_tcp": ("mooncake", "mooncake-transfer-engine"),
    "nixl": ("nixl", "nixl"),
}
PLACEHOLDER_URL = "http://127.0.0.1:1"  # where the preflight checks a wired flag before any port is known
PD_BOOTSTRAP_PORT = 8998  # SGLang's default --disaggregation-bootstrap-port


# -- the launch lines ------------------------------------------------------------------------------------------


def member_spec(spec: ServerSpec, index: int, urls: list[str]) -> ServerSpec:
    """Member `index` of `spec`'s deployment as a server spec, wired to the URLs of the members before it."""
    deployment = spec.deployment
    member = deployment.members[index]
    wired = _wiring(deployment, index, urls)
    engine = "sglang-router" if member.role == "router" else (member.engine or spec.engine)
    args = wired if member.role == "router" else (*spec.args, *member.args, *wired)
    return dataclasses.replace(
        spec,
        config=f"{spec.config}.{_name(deployment, index)}",
        engine=engine,
        args=tuple(args),
        env={**spec.env, **member.env},
        gpus=len(member.gpus),
        deployment=None,
    )


def _name(deployment: DeploymentSpec, index: int) -> str:
    role = deployment.members[index].role
    same = [i for i, m in enumerate(deployment.members) if m.role == role]
    return role if len(same) == 1 else f"{role}{same.index(index)}"


def _wiring(deployment: DeploymentSpec, index: int, urls: list[str]) -> list[str]:
    role = deployment.members[index].role
    if deployment.kind == "epd" and role == "language":
        return ["--encoder-urls", *urls[:index]]
    if deployment.kind == "pd" and role in ("prefill", "decode"):
        bootstrap = ["--disaggregation-bootstrap-port", str(PD_BOOTSTRAP_PORT)] if role == "prefill" else []
        return ["--disaggregation-mode", role, *bootstrap]
    if deployment.kind == "pd" and role == "router":
        return ["--pd-disaggregation", "--mini-lb", "--prefill", urls[0], str(PD_BOOTSTRAP_PORT), "--decode", urls[1]]
    return []


def launch_lines(spec: ServerSpec) -> list[ServerSpec]:
    """Every member's spec as the preflight checks it (wiring URLs as placeholders)."""
    members = spec.deployment.members
    return [member_spec(spec, i, [PLACEHOLDER_URL] * len(members)) for i in range(len(members))]


def all_args(spec: ServerSpec) -> list[str]:
    return [arg for line in launch_lines(spec) for arg in line.args]


# -- before launch -----------------------------------------------------------------------------------------------


def preflight(spec: ServerSpec, engine_for) -> list:
    """Check every member's launch line with its engine's preflight, and what SGLang checks only at start-up.
    `engine_for(name)` gives an engine; returns the members' preflight results."""
    if spec.deployment.kind == "epd":
        _check_epd_architecture(spec)
    if spec.deployment.kind == "pd":
        backend = transfer_backend(spec)
        if backend == "fake":
            raise ConfigError(
                f"{spec.id}: --disaggregation-transfer-backend fake moves no KV (SGLang's prefill side "
                "refuses it); a pd config needs mooncake, mooncake_tcp or nixl"
            )
    return [engine_for(line.engine).preflight(line) for line in launch_lines(spec)]


def _check_epd_architecture(spec: ServerSpec) -> None:
    config = Path(spec.model_path) / "config.json"
    if not config.is_file():  # a hub id: SGLang checks it at start-up
        return
    architectures = json.loads(config.read_text()).get("architectures") or []
    if not any(a in EPD_ARCHITECTURES for a in architectures):
        raise ConfigError(
            f"{spec.id}: SGLang serves the vision encoder split (epd) only for {', '.join(EPD_ARCHITECTURES)}; "
            f"{config} names {architectures}"
        )


def transfer_backend(spec: ServerSpec) -> str:
    from harness.serve.engines.flags import flag_value

    return flag_value(all_args(spec), "--disaggregation-transfer-backend") or "mooncake"


def skip_reason(spec: ServerSpec) -> str | None:
    """Why a deployment cannot run in this environment (a pd config without its KV transfer package), or None."""
    if spec.deployment is None or spec.deployment.kind != "pd":
        return None
    backend = transfer_backend(spec)
    module, package = TRANSFER_MODULES.get(backend, (None, None))
    if module and importlib.util.find_spec(module) is None:
        return (
            f"{spec.id}: pd needs the KV transfer backend {backend!r} (Python module {module!r}, pip package "
            f"{package}), which is not installed here"
        )
    if importlib.util.find_spec("sglang_router") is None:
        return f"{spec.id}: pd needs the router (pip package sglang-router: python -m sglang_router.launch_router)"
    return None
