"""Attach: a server started elsewhere (multi-node SGLang under Slurm/Kubernetes, or one being debugged).

Nothing is launched or killed. `Server.attach(base_url)` checks health and reads /server_info to learn what
the server is. `/health` is used rather than `/health_generate` because an attached server may be busy with
other work and a probe should not queue a generation behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.spec import ServerSpec
from harness.serve.engines.base import Engine


@dataclass(frozen=True)
class AttachEngine(Engine):
    name: str = "attach"
    label: str = "sglang"  # what one attaches to; the HF engine names itself in /server_info
    health_path: str = "/health"
    startup_timeout: float = 60.0  # how long to wait for a remote server that is still warming up
    launches: bool = False

    def preflight(self, spec: ServerSpec) -> None:
        """Nothing to check locally: the model lives with the remote server."""

    def gpus_needed(self, spec: ServerSpec) -> int:
        return 0  # the GPUs are the remote server's, not this machine's
