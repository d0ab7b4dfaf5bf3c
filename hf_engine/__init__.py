"""The HF reference engine: a transformers model behind SGLang's native and OpenAI APIs, with a radix prefix cache.

Standalone: `python -m hf_engine --model-path DIR --port N` serves a checkpoint without the harness (which launches it
the same way, harness/serve/engines/hf.py). This `__init__` imports nothing heavy.

- server.py: FastAPI routes and flags; responses.py: JSON, error and SSE bodies; protocol.py: request parsing;
output.py: SGLang-shaped responses;
  openai_api.py: the OpenAI routes; engine.py: async front of the worker; scheduler.py: the batching worker;
  runtime.py: model loading and forward passes; prefix_cache.py: the page-granular radix cache;
  processor.py: a VLM's processor without torchvision; multimodal.py: images in requests (reading, placeholder
  expansion, cache keys); vision.py: a VLM's forward over the KV cache with its images.
"""

__version__ = "0.1.0"
