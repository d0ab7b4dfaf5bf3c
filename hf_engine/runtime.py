"""The torch side of the HF reference engine: load a transformers model, run it over a KV cache, sample, logprobs.

Numerics follow SGLang 0.5.17 (python/sglang/srt/layers/sampler.py, logits_processor.py):

- Input (prompt) logprobs are `log_softmax` of the raw logits.
- Output logprobs are `log_softmax(logits / temperature)` taken before top-k/top-p/min-p filtering, and the raw
  `log_softmax` for greedy requests (SGLang turns temperature 0 into temperature 1 with top_k 1). SGLang only
  returns unscaled output logprobs when `SGLANG_RETURN_ORIGINAL_LOGPROB` is set, and so does this engine.
- top-k / top-p / min-p filter the sorted probabilities as SGLang's pytorch sampling backend does.
- Everything that turns logits into numbers runs in float32, whatever the model dtype.

Prefill from a cached prefix and a cold prefill run the same code: `forward(ids, past)` where `past` is a
`DynamicCache` holding either nothing or the reused KV; only the uncached suffix goes through the model.

A checkpoint with a preprocessor_config.json is a vision-language model: it loads through `vision.py`
(AutoModelForImageTextToText) with its processor (`processor.load_processor`), `images` prepares requests'
images, and `forward` takes the request's `MultimodalPrompt`; text models take the unchanged causal-LM path.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import torch

from hf_engine.multimodal import ImagePreparer, VisionTokens
from hf_engine.processor import is_multimodal, load_processor
from hf_engine.vision import VisionLanguageForward, load_vision_language_model

log = logging.getLogger("hf_server")

GREEDY_EPS = 1e-6  # SGLang's _SAMPLING_EPS: a temperature below this is greedy
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}

TINY_MODEL_PARAMS = 20_000_000
KV = tuple  # per layer: (keys, values), each [1, kv_heads, tokens, head_dim]


@dataclass(frozen=True)
class RuntimeConfig:
    model_path: str
    tokenizer_path: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    context_length: int | None = None
    cpu_threads: int = 0  # 0: one thread for tiny models (thread hand-offs dominate), torch's default otherwise
    image_limit: int | None = None  # --limit-mm-data-per-request's "image"


class TorchKVOps:
    """`PayloadOps` for KV tuples: slice and join along the token axis (dim 2)."""

    def slice(self, payload: KV, start: int, end: int, copy: bool) -> KV:
        parts = tuple((k[:, :, start:end], v[:, :, start:end]) for k, v in payload)
        if copy:
            parts = tuple((k.clone(), v.clone()) for k, v in parts)
        return parts

    def concat(self, payloads) -> KV:
        if len(payloads) == 1:
            return payloads[0]  # DynamicCache.update concatenates, so the cached tensors are never aliased
        layers = len(payloads[0])
        return tuple(
            (
                torch.cat([p[i][0] for p in payloads], dim=2),
                torch.cat([p[i][1] for p in payloads], dim=2),
            )
            for i in range(layers)
        )


class ModelRunner:
    """One transformers causal LM and its tokenizer; every call runs on the engine's single worker thread."""

    def __init__(self, config: RuntimeConfig):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"--device {config.device} was asked for but torch sees no CUDA device")
        self.config = config
        self._token_texts: dict[int, str] = {}
        self._tokenizer_lock = threading.Lock()
        self.device = torch.device(config.device)
        self.tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_path or config.model_path)
        self.images, self.vision = None, None
        if is_multimodal(config.model_path):
            self.model = load_vision_language_model(config.model_path, DTYPES[config.dtype])
            self.images = self._image_preparer(config)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(config.model_path, dtype=DTYPES[config.dtype])
        self.model.to(self.device).eval()
        if self.images is not None:
            self.vision = VisionLanguageForward(self.model)
        if self.device.type == "cpu":
            small = sum(p.numel() for p in self.model.parameters()) < TINY_MODEL_PARAMS
            torch.set_num_threads(config.cpu_threads or (1 if small else torch.get_num_threads()))
        self.hf_config = self.model.config
        self.dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        text_config = self.hf_config.get_text_config()
        self.context_length = int(
            config.context_length or getattr(text_config, "max_position_embeddings", None) or 4096
        )
        self.eos_token_ids = self._eos_token_ids()
        self.cache_unsupported_reason = self._cache_unsupported_reason()
        self.kv_bytes_per_token = self._kv_bytes_per_token()
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed)

    # -- model -----------------------------------------------------------------------------------------

    def new_cache(self, kv: KV | None = None):
        from transformers import DynamicCache

        if kv is None:
            return DynamicCache(config=self.hf_config)
        return DynamicCache(ddp_cache_data=kv, config=self.hf_config)

    @staticmethod
    def cache_kv(cache) -> KV:
        return tuple((layer.keys, layer.values) for layer in cache.layers)

    def _image_preparer(self, config: RuntimeConfig) -> ImagePreparer:
        processor = load_processor(config.model_path, self.tokenizer)
        if not getattr(self.tokenizer, "chat_template", None) and getattr(processor, "chat_template", None):
            self.tokenizer.chat_template = processor.chat_template  # VLMs often ship it with the processor only
        marker = self.tokenizer.convert_tokens_to_ids  # Qwen3-VL's config names no vision_end_token_id
        tokens = VisionTokens(
            int(self.model.config.image_token_id),
            getattr(self.model.config, "video_token_id", None),
            marker("<|vision_start|>"),
            marker("<|vision_end|>"),
        )
        return ImagePreparer(
            processor.image_processor,
            tokens,
            config.image_limit,
            getattr(processor, "video_processor", None),
            lambda text: self.tokenizer.encode(text, add_special_tokens=False),
        )

    @torch.inference_mode()
    def forward(self, ids: list[int], past, logits_for_last: int = 1, mm=None) -> torch.Tensor:
        """Run `ids` after the tokens already in `past` (which grows in place); float32 logits of the last
        `logits_for_last` positions, shape [logits_for_last, vocab]. `mm`: the request's images (VLMs only)."""
        if self.vision is not None:
            return self.vision.forward(ids, past, logits_for_last, mm)
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(
            input_ids=input_ids,
            past_key_values=past,
            use_cache=True,
            logits_to_keep=max(1, logits_for_last),
        )
        return out.logits[0].float()

    # -- tokens ----------------------------------------------------------------------------------------

    # The worker thread (stop strings) and the asyncio thread (prompts, texts) share one fast tokenizer;
    # the lock keeps the Rust side from seeing concurrent borrows ("Already borrowed").

    def encode(self, text: str) -> list[int]:
        with self._tokenizer_lock:
            return list(self.tokenizer.encode(text))

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        with self._tokenizer_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def encode_chat(self, messages: list[dict], template_kwargs: dict | None = None) -> list[int]:
        """The tokenizer's chat template with the generation prompt, tokenized without extra special tokens."""
        with self._tokenizer_lock:
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **(template_kwargs or {})
            )
            return list(self.tokenizer.encode(text, add_special_tokens=False))

    def token_text(self, token_id: int) -> str:
        """One token decoded alone, as SGLang's `return_text_in_logprobs` gives it (memoised)."""
        text = self._token_texts.get(token_id)
        if text is None:
            text = self._token_texts[token_id] = self.decode([token_id], skip_special_tokens=False)
        return text

    def _eos_token_ids(self) -> set[int]:
        ids: set[int] = set()
        sources = [getattr(self.hf_config, "eos_token_id", None), self.tokenizer.eos_token_id]
        generation_config = getattr(self.model, "generation_config", None)
        if generation_config is not None:
            sources.append(getattr(generation_config, "eos_token_id", None))
        for value in sources:
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids

    def _cache_unsupported_reason(self) -> str | None:
        """Prefix reuse is exact only when every layer keeps the full KV of every token (no sliding window,
        no recurrent state)."""
        from transformers.cache_utils import DynamicLayer

        probe = self.new_cache()
        kinds = sorted({type(layer).__name__ for layer in probe.layers if type(layer) is not DynamicLayer})
        if kinds:
            return f"cache layers {', '.join(kinds)} cannot be cropped to an arbitrary prefix"
        return None

    def _kv_bytes_per_token(self) -> int:
        if self.cache_unsupported_reason:
            return 0
        cache = self.new_cache()
        self.forward([0], cache)
        return sum(k.element_size() * k[0, :, 0].numel() * 2 for k, _ in self.cache_kv(cache))


# -- sampling and logprobs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingChoice:
    token_id: int
    logprobs: torch.Tensor  # float32 [vocab], what SGLang reports for the output token


@dataclass(frozen=True)
class LogitNoise:
    """Run-to-run variation of greedy outputs, as batched serving has it (off unless `--logit-noise` > 0).

    On a GPU server a request's logits move by rounding that depends on what it was batched with, so a
    near-tie flips from run to run even at temperature 0. Here every output token's float32 logits get
    uniform noise in [-bound, bound] from a generator seeded by (`seed`, the request's arrival number at the
    worker): different seeds give different runs, one seed and one arrival order the same run, and tokens whose
    top two logits are further apart than 2·bound never change. Prompt (input) logprobs are left alone, so a
    cache suite's replay scores what the server really produced. For harness.verdict.statistics' false-alarm bench
    (bench/bench_false_alarms.py); a reference engine never runs with it."""

    bound: float
    seed: int = 0

    def generator(self, arrival: int) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed((self.seed * 1_000_003 + arrival) % 2**63)

    def perturb(self, logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.rand(logits.shape, generator=generator, dtype=torch.float32) * 2.0 - 1.0
        return logits + self.bound * noise.to(logits.dtype)


def return_original_logprob() -> bool:
    return os.environ.get("SGLANG_RETURN_ORIGINAL_LOGPROB", "").lower() in ("1", "true", "yes")


def sample(logits: torch.Tensor, params: Any, generator: torch.Generator, original: bool = False) -> SamplingChoice:
    """Pick the next token from one row of float32 logits under SGLang's sampling semantics; `original`
    reports the unscaled logprobs (SGLANG_RETURN_ORIGINAL_LOGPROB)."""
    if params.temperature < GREEDY_EPS:
        return SamplingChoice(int(torch.argmax(logits)), torch.log_softmax(logits, dim=-1))
    logprobs = torch.log_softmax(logits / params.temperature, dim=-1)
    reported = torch.log_softmax(logits, dim=-1) if original else logprobs
    if params.top_k == 1:
        return SamplingChoice(int(torch.argmax(logits)), reported)
    probs = logprobs.exp()
    probs_sort, probs_idx = probs.sort(descending=True)
    if params.top_k > 0:
        probs_sort[params.top_k :] = 0.0
    cumulative = torch.cumsum(probs_sort, dim=-1)
    probs_sort[(cumulative - probs_sort) > params.top_p] = 0.0
    if params.min_p > 0:
        probs_sort[probs_sort < probs_sort[0] * params.min_p] = 0.0
    choice = torch.multinomial(probs_sort.cpu(), 1, generator=generator)
    return SamplingChoice(int(probs_idx[int(choice)]), reported)


def top_logprobs(logprobs: torch.Tensor, k: int) -> list[tuple[float, int]]:
    values, indices = torch.topk(logprobs, k=min(k, logprobs.shape[-1]))
    return list(zip(values.tolist(), indices.tolist()))


@dataclass
class InputLogprobs:
    """SGLang's input logprobs: one entry per prompt token from `start`, the first entry's logprob is None."""

    token_logprobs: list[tuple[float | None, int]]
    top_logprobs: list[list[tuple[float, int]] | None]


def input_logprobs(logits: torch.Tensor, ids: list[int], start: int, top_k: int) -> InputLogprobs:
    """`logits` are the rows for positions start..len(ids)-1 (the last one predicts the first output token).

    Row j predicts token start+j+1, so token `start` has no logprob (SGLang: `[None] + logprobs[:-1]`).
    """
    targets = ids[start + 1 :]
    rows = torch.log_softmax(logits[: len(targets)], dim=-1)
    picked = rows.gather(1, torch.tensor(targets, dtype=torch.long, device=rows.device)[:, None])[:, 0]
    token_logprobs = [(None, ids[start])] + list(zip(picked.tolist(), targets))
    tops: list[list[tuple[float, int]] | None] = []
    if top_k > 0:
        tops = [None] + [top_logprobs(row, top_k) for row in rows]
    return InputLogprobs(token_logprobs, tops)


def mask_stop_tokens(logits: torch.Tensor, stop_ids: set[int]) -> torch.Tensor:
    """`min_new_tokens`: SGLang's MinNewTokensPenalizer sets the stop tokens' logits to -inf until reached."""
    masked = logits.clone()
    ids = [i for i in stop_ids if 0 <= i < masked.shape[-1]]
    if ids:
        masked[ids] = float("-inf")
    return masked
