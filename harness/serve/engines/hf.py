"""The HF reference engine's launcher: `python -m hf_engine ...` (the package hf_engine/).

Its flags follow SGLang's names (--device, --dtype, --page-size, --disable-radix-cache), so a config's args
mean the same on both engines where they overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.spec import ServerSpec
from harness.serve.engines.base import Engine


@dataclass(frozen=True)
class HFEngine(Engine):
    name: str = "hf"
    label: str = "hf-reference"  # the server's /server_info names itself; this is only the fallback
    health_path: str = "/health_generate"
    # Loading a tiny model takes seconds; a 7B model on CPU takes minutes.
    startup_timeout: float = 600.0

    def command(self, spec: ServerSpec, host: str, port: int) -> list[str]:
        cmd = [self.python, "-m", "hf_engine", "--model-path", spec.model_path]
        if spec.tokenizer_path:
            cmd += ["--tokenizer-path", spec.tokenizer_path]
        return [*cmd, "--host", host, "--port", str(port), *spec.args]

    def gpus_needed(self, spec: ServerSpec) -> int:
        wants_cuda = any(a == "cuda" or a.startswith(("cuda:", "--device=cuda")) for a in spec.args)
        return max(spec.gpus, 1 if wants_cuda else 0)
