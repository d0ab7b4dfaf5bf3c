"""Engines that serve a model for the harness: SGLang (the product), the HF reference, vLLM, attach.

`get_engine(name)` is the one way to get one; an unknown name is a ConfigError with a did-you-mean.
"""

from __future__ import annotations

from harness.errors import unknown_choice
from harness.serve.engines.attach import AttachEngine
from harness.serve.engines.base import Engine
from harness.serve.engines.hf import HFEngine
from harness.serve.engines.sglang import SGLangEngine
from harness.serve.engines.vllm import VLLMEngine

ENGINES: dict[str, type[Engine]] = {
    "sglang": SGLangEngine,
    "hf": HFEngine,
    "vllm": VLLMEngine,
    "attach": AttachEngine,
}


def get_engine(name: str, where: str = "") -> Engine:
    """The engine called `name`; `where` says where the name came from, for the error message."""
    try:
        engine_class = ENGINES[name]
    except (KeyError, TypeError):
        raise unknown_choice("engine", name, ENGINES, where=where) from None
    return engine_class()


__all__ = ["ENGINES", "Engine", "get_engine"]
