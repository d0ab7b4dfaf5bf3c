"""The asyncio face of the HF reference engine: load once, submit sequences, await or stream their results.

HTTP routes (native in `server`, OpenAI in `openai_api`) only talk to `Engine`; `Engine` owns the model
runner, the prefix cache and the worker thread (`hf_scheduler`), and describes itself for `/server_info` and
`/model_info` with SGLang's field names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from hf_engine import __version__
from hf_engine.protocol import (
    GenerateItem,
    Limits,
    LogprobOptions,
    SamplingParams,
)
from hf_engine.scheduler import Sequence, Worker

log = logging.getLogger("hf_server")

ENGINE_NAME = "hf-reference"
KV_BUDGET_BYTES = 2 << 30  # default bound of the prefix cache when --max-cached-tokens is not given
HEALTH_CHECK_TIMEOUT = 20.0  # SGLANG_HEALTH_CHECK_TIMEOUT's default


@dataclass(frozen=True)
class EngineOptions:
    """The server arguments, named as SGLang's `ServerArgs` fields where SGLang has one."""

    model_path: str
    tokenizer_path: str | None = None
    host: str = "127.0.0.1"
    port: int = 30000
    device: str = "cpu"
    dtype: str = "float32"
    page_size: int = 1
    disable_radix_cache: bool = False
    max_cached_tokens: int | None = None
    context_length: int | None = None
    served_model_name: str | None = None
    random_seed: int = 0
    enable_cache_report: bool = True
    cpu_threads: int = 0
    limit_mm_data_per_request: dict | None = None  # SGLang's flag, e.g. {"image": 3}; only "image" applies here
    logit_noise: float = 0.0  # runtime.LogitNoise's bound; 0: off
    logit_noise_seed: int = 0


class EngineNotReady(RuntimeError):
    """The model is still loading (HTTP 503)."""


class Engine:
    def __init__(self, options: EngineOptions):
        self.options = options
        self.runner = None
        self.cache = None
        self.worker: Worker | None = None
        self.started = time.time()
        self.load_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def load(self) -> None:
        """Blocking: load model and tokenizer, build the prefix cache, start the worker."""
        from hf_engine.prefix_cache import PrefixCache
        from hf_engine.runtime import LogitNoise, ModelRunner, RuntimeConfig, TorchKVOps

        opts = self.options
        tic = time.perf_counter()
        runner = ModelRunner(
            RuntimeConfig(
                opts.model_path,
                opts.tokenizer_path,
                opts.device,
                opts.dtype,
                opts.random_seed,
                opts.context_length,
                opts.cpu_threads,
                (opts.limit_mm_data_per_request or {}).get("image"),
            )
        )
        if runner.cache_unsupported_reason and not opts.disable_radix_cache:
            log.warning("prefix cache disabled: %s", runner.cache_unsupported_reason)
        if self.cache_enabled(runner):
            self.cache = PrefixCache(opts.page_size, self._max_cached_tokens(runner), TorchKVOps())
        self.runner = runner
        noise = LogitNoise(opts.logit_noise, opts.logit_noise_seed) if opts.logit_noise > 0 else None
        self.worker = Worker(runner, self.cache, noise)
        self.worker.start()
        self.load_seconds = time.perf_counter() - tic
        log.info("model %s loaded in %.1f s (%s, %s)", opts.model_path, self.load_seconds, runner.device, runner.dtype)

    def shutdown(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    @property
    def ready(self) -> bool:
        return self.worker is not None

    def cache_enabled(self, runner=None) -> bool:
        runner = runner or self.runner
        return not self.options.disable_radix_cache and runner is not None and not runner.cache_unsupported_reason

    def _max_cached_tokens(self, runner) -> int:
        if self.options.max_cached_tokens is not None:
            return self.options.max_cached_tokens
        return max(self.options.page_size, min(1 << 20, KV_BUDGET_BYTES // max(1, runner.kv_bytes_per_token)))

    def require_ready(self):
        if not self.ready:
            raise EngineNotReady("the model is still loading")
        return self.runner

    @property
    def limits(self) -> Limits:
        runner = self.require_ready()
        return Limits(vocab_size=runner.vocab_size, context_length=runner.context_length)

    # -- requests ----------------------------------------------------------------------------------------

    def _start(self, items: list[GenerateItem], events: asyncio.Queue) -> list[Sequence]:
        loop = asyncio.get_running_loop()
        seqs = []
        for index, item in enumerate(items):

            def notify(n_tokens, final, index=index):
                loop.call_soon_threadsafe(events.put_nowait, (index, n_tokens, final))

            seqs.append(Sequence(item=item, notify=notify))
        for seq in seqs:
            self.worker.submit(seq)
        return seqs

    async def stream(self, items: list[GenerateItem]) -> AsyncIterator[tuple[int, Sequence, int, bool]]:
        """Yield (index, sequence, tokens so far, finished) as the worker makes progress; intermediate
        updates of one sequence that queued up while the consumer was busy are coalesced into the newest."""
        self.require_ready()
        events: asyncio.Queue = asyncio.Queue()
        seqs = self._start(items, events)
        remaining = len(seqs)
        try:
            while remaining:
                batch = [await events.get()]
                while not events.empty():
                    batch.append(events.get_nowait())
                newest: dict[int, tuple[int, bool]] = {}
                for index, n_tokens, final in batch:
                    if not newest.get(index, (0, False))[1]:
                        newest[index] = (n_tokens, final)
                for index, (n_tokens, final) in newest.items():
                    remaining -= final
                    yield index, seqs[index], n_tokens, final
        finally:
            for seq in seqs:  # a client that went away: stop spending compute on it
                if not seq.retired:
                    seq.cancelled = True

    async def generate(self, items: list[GenerateItem]) -> list[Sequence]:
        """Run `items` to completion (non-streaming: the worker only reports the end)."""
        done = [None] * len(items)
        async for index, seq, _, final in self.stream(items):
            if final:
                done[index] = seq
        return done

    async def flush_cache(self) -> bool:
        self.require_ready()
        if self.worker.busy():
            return False
        return await asyncio.wrap_future(self.worker.flush())

    async def health_generate(self) -> bool:
        """One greedy token from input id 0, as SGLang's probe; kept out of the prefix cache."""
        self.require_ready()
        item = GenerateItem(
            rid=f"HEALTH_CHECK_{time.time_ns()}",
            input_ids=[0],
            params=SamplingParams(max_new_tokens=1, temperature=0.0),
            logprobs=LogprobOptions(),
            use_cache=False,
        )
        try:
            [seq] = await asyncio.wait_for(self.generate([item]), timeout=HEALTH_CHECK_TIMEOUT)
        except asyncio.TimeoutError:
            return False
        return seq.finish_reason is not None and seq.finish_reason.get("type") != "abort"

    # -- self-description --------------------------------------------------------------------------------

    def model_info(self) -> dict:
        runner = self.require_ready()
        config = runner.hf_config
        return {
            "model_path": self.options.model_path,
            "tokenizer_path": self.options.tokenizer_path or self.options.model_path,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": "default",
            "has_image_understanding": runner.vision is not None,
            "has_audio_understanding": False,
            "model_type": getattr(config, "model_type", None),
            "architectures": getattr(config, "architectures", None),
        }

    def server_info(self) -> dict:
        import torch
        import transformers

        runner = self.require_ready()
        args = asdict(self.options)
        args["tokenizer_path"] = args["tokenizer_path"] or args["model_path"]
        args["served_model_name"] = self.served_model_name
        args["disable_radix_cache"] = not self.cache_enabled()
        args["context_length"] = runner.context_length
        return {
            **args,
            "engine": ENGINE_NAME,
            "version": f"{__version__}+transformers.{transformers.__version__}",
            "harness_version": __version__,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "dtype": runner.dtype,
            # What it serves, as SGLang names it, so an attached harness can compare it with a config's args.
            "tp_size": 1,
            "dp_size": 1,
            "pp_size": 1,
            "ep_size": 1,
            "speculative_algorithm": None,
            "device": str(runner.device),
            "torch_num_threads": torch.get_num_threads(),
            "max_cached_tokens": self.cache.max_tokens if self.cache else 0,
            "max_total_num_tokens": self.cache.max_tokens if self.cache else 0,
            "radix_cache_disabled_reason": self._cache_off_reason(),
            "prefix_cache": self.cache.stats() if self.cache else None,
            "requests_served": self.worker.requests_served,
            "return_original_logprob": self.worker.original_logprobs,
            "startup_time": self.load_seconds,
            "internal_states": [{}],
        }

    def _cache_off_reason(self) -> str | None:
        if self.options.disable_radix_cache:
            return "--disable-radix-cache"
        return self.runner.cache_unsupported_reason

    @property
    def served_model_name(self) -> str:
        return self.options.served_model_name or self.options.model_path
