"""The HF reference engine: a transformers model behind SGLang's native and OpenAI APIs, with a radix prefix cache.

`HFEngine` (adapter.py) is the thin launcher the pool uses; the server is `python -m harness.engines.hf.server`.
This package's `__init__` imports nothing heavy, so the pool can name the engine without loading torch.

- server.py: FastAPI routes and flags; protocol.py: request parsing; output.py: SGLang-shaped responses;
  openai_api.py: the OpenAI routes; engine.py: async front of the worker; scheduler.py: the batching worker;
  runtime.py: model loading and forward passes; prefix_cache.py: the page-granular radix cache;
  processor.py: a VLM's processor without torchvision; multimodal.py: images in requests (reading, placeholder
  expansion, cache keys); vision.py: a VLM's forward over the KV cache with its images.
"""

from harness.engines.hf.adapter import HFEngine

__all__ = ["HFEngine"]
