"""What one server under test is: the unit that is launched once and shared by every suite of a config, and the
deployment (several processes) a config may declare instead (harness.serve.deployment launches it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServerSpec:
    """One (model, config) pair as thresholds.yaml declares it, ready for an engine to launch.

    `model` and `config` are the names used in test ids (`test_gsm8k[model/config]`); `model_path`
    is what the engine loads (a hub id or a local directory).
    """

    model: str
    config: str
    model_path: str
    engine: str = "sglang"
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    gpus: int = 0
    tokenizer_path: str | None = None
    startup_timeout: float | None = None
    # The most images one request of its suites sends (MMMU: 7); engines that cap images per prompt (vLLM) are
    # launched with this limit. 0 for a text-only config.
    images_per_prompt: int = 0
    # Several processes instead of one (harness.serve.deployment.DeploymentSpec: EPD, PD, an ordered group); None: one.
    deployment: Any = None

    @property
    def id(self) -> str:
        return f"{self.model}/{self.config}"

    @property
    def slug(self) -> str:
        """File-system-safe name, used for log and report files."""
        return f"{self.model}__{self.config}".replace("/", "_")


KIND_ROLES = {"epd": ("encoder", "language"), "pd": ("prefill", "decode", "router"), "group": None}


@dataclass(frozen=True)
class MemberSpec:
    role: str
    args: tuple[str, ...] = ()
    gpus: tuple[int, ...] = ()  # indices into the config's GPU ids
    env: Mapping[str, str] = field(default_factory=dict)
    engine: str | None = None  # None: the config's engine (the router's is always sglang-router)


@dataclass(frozen=True)
class DeploymentSpec:
    kind: str
    members: tuple[MemberSpec, ...]

    @property
    def gpus(self) -> int:
        """GPUs the deployment occupies: its highest member index + 1."""
        return max((index + 1 for member in self.members for index in member.gpus), default=0)
