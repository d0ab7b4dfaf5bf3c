"""What every engine tells the one `Server` lifecycle: how to launch it, how to see it is ready, what it is.

An engine is a small frozen description, not a process: `harness.serve.server.Server` owns the process. Engines
that launch build a command line; the attach engine launches nothing and only says how to probe a server
that someone else started.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.spec import ServerSpec
from harness.errors import ConfigError


@dataclass(frozen=True)
class Engine:
    """Base of all engines. Subclasses set the class-level defaults and override `command`.

    `python` is the interpreter that runs `-m <module>` launchers: by default the one running the harness,
    which on a GPU node is the environment SGLang is installed in.
    """

    name: str = "engine"
    # Used when the server's own /server_info does not name its engine (SGLang's does not).
    label: str = "engine"
    health_path: str = "/health_generate"
    startup_timeout: float = 600.0
    launches: bool = True
    server_info_paths: tuple[str, ...] = ("/server_info", "/get_server_info")
    model_info_paths: tuple[str, ...] = ("/model_info", "/get_model_info")
    # Engines without a server-info endpoint (vLLM) still start; their `server.info` is then {}.
    requires_server_info: bool = True
    python: str = sys.executable

    def command(self, spec: ServerSpec, host: str, port: int) -> list[str]:
        raise NotImplementedError(f"engine {self.name!r} does not launch a process")

    def preflight(self, spec: ServerSpec) -> Any:
        """Reject a spec before anything is launched. Base check: the model path is usable."""
        check_model_path(spec)
        return None

    def gpus_needed(self, spec: ServerSpec) -> int:
        """GPUs this spec occupies; engines that can read it from the args (SGLang) refine it."""
        return spec.gpus

    def environment(self, spec: ServerSpec) -> dict[str, str]:
        """Extra environment of the launched process (on top of os.environ and spec.env)."""
        return {}

    def startup_timeout_for(self, spec: ServerSpec) -> float:
        return float(spec.startup_timeout) if spec.startup_timeout else self.startup_timeout

    def describe_version(self, info: Mapping[str, Any]) -> str:
        """'<engine> <version>' from /server_info, e.g. 'sglang 0.5.17' or 'hf-reference 0.1.0+transformers.5.23'."""
        engine = info.get("engine") or info.get("engine_name") or self.label
        version = info.get("version") or "unknown"
        return f"{engine} {version}"


def looks_like_local_path(model_path: str) -> bool:
    """A hub id is 'org/name' (or a bare name); anything absolute, relative-dotted or present on disk is local."""
    return (
        os.path.isabs(model_path)
        or model_path.startswith((".", "~"))
        or model_path.count("/") > 1
        or Path(model_path).exists()
    )


def check_model_path(spec: ServerSpec) -> None:
    """An empty model path, or a local directory that is not there, is a config error (before any launch)."""
    where = f"{spec.id} (engine {spec.engine!r})"
    if not spec.model_path or not str(spec.model_path).strip():
        raise ConfigError(f"{where}: model_path is empty; give a local model directory or a hub id like 'org/name'")
    if looks_like_local_path(spec.model_path):
        path = Path(spec.model_path).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"{where}: model_path {spec.model_path!r} is not a directory (resolved to {path.resolve()}); "
                "give an existing local model directory or a hub id like 'org/name'"
            )
