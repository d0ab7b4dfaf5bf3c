"""The HF reference engine's scheduler: one worker thread owns the model, the KV caches and the prefix cache.

Requests arrive on a queue from the asyncio side. Each loop iteration prefills every newly arrived sequence
(reusing the longest cached prefix), then advances every running sequence by one token, so long generations,
streams and health probes interleave the way they would on a continuous-batching server. Sequences are run
one at a time rather than padded into a batch: a sequence's numbers then never depend on what else is
running, which is what a reference needs (concurrent results equal sequential ones, bit for bit).

Prefix-cache semantics are SGLang 0.5.17's, as observed on GPU (see shared/research/sglang-on-gpu.md):
- at most `len(prompt) - 1` ids are matched (one prompt token is always computed), and when input logprobs
  are asked for (`return_logprob` with `logprob_start_len >= 0`) at most `logprob_start_len` ids
  (`Req._compute_max_prefix_len`), so `logprob_start_len=0` bypasses the cache;
- the prompt's KV is inserted right after its prefill (`cache_unfinished_req`), and prompt + every generated
  token when the request finishes, so a follow-up turn hits the generated tokens too (decode hit
  300 + 32 + 1 -> 332 at page 1). The last generated token has not been through the model yet, so one extra
  forward step computes its KV before insertion;
- a `max_new_tokens=0` request still caches its prompt. The health probe stays out of the cache.
- the tree is keyed by `GenerateItem.cache_key`: the ids, with each image's tokens replaced by a key derived
  from its content (SGLang's pad values), so different images never share KV and a hit may end inside an image.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from hf_engine.prefix_cache import PrefixCache
from hf_engine.protocol import GenerateItem
from hf_engine.runtime import (
    InputLogprobs,
    LogitNoise,
    ModelRunner,
    input_logprobs,
    mask_stop_tokens,
    return_original_logprob,
    sample,
    top_logprobs,
)

log = logging.getLogger("hf_server")


@dataclass(eq=False)
class Sequence:
    """A request's state; the worker appends to it, the asyncio side reads prefixes of it after a notify."""

    item: GenerateItem
    notify: Callable[[int, bool], None]  # (tokens so far, finished); called on the worker thread
    received: float = field(default_factory=time.perf_counter)
    output_ids: list[int] = field(default_factory=list)
    cached_tokens: int = 0
    input_logprobs: InputLogprobs | None = None
    output_token_logprobs: list[tuple[float, int]] = field(default_factory=list)
    output_top_logprobs: list[list[tuple[float, int]]] = field(default_factory=list)
    finish_reason: dict[str, Any] | None = None
    e2e_latency: float | None = None
    cancelled: bool = False
    retired: bool = False
    past: Any = None
    generator: torch.Generator | None = None
    noise: torch.Generator | None = None  # LogitNoise's, per request


@dataclass
class _Flush:
    done: concurrent.futures.Future


_STOP = object()


class Worker:
    """Runs every torch call on one thread; `submit`, `flush` and `busy` may be called from any thread."""

    def __init__(self, runner: ModelRunner, cache: PrefixCache | None, noise: LogitNoise | None = None):
        self.runner = runner
        self.cache = cache
        self.noise = noise
        self._arrivals = 0
        self._inbox: queue.Queue = queue.Queue()
        self._active: list[Sequence] = []
        self._in_flight = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="hf-engine-worker", daemon=True)
        self.requests_served = 0
        self.original_logprobs = return_original_logprob()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._inbox.put(_STOP)
        self._thread.join(timeout=30)

    def submit(self, seq: Sequence) -> None:
        with self._lock:
            self._in_flight += seq.item.use_cache
        self._inbox.put(seq)

    def busy(self) -> bool:
        """Requests that may use the prefix cache are queued or running (health probes do not count: they stay
        out of the cache, so a monitor polling /health_generate never makes /flush_cache fail)."""
        with self._lock:
            return self._in_flight > 0

    def flush(self) -> concurrent.futures.Future:
        """Empty the prefix cache unless requests are queued or running; the future holds True on success."""
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._inbox.put(_Flush(done))
        return done

    # -- the loop ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            arrived = self._drain(block=not self._active)
            if arrived is _STOP:
                return
            for seq in arrived:
                self._guarded(self._prefill, seq)
            for seq in list(self._active):
                self._guarded(self._decode, seq)

    def _drain(self, block: bool):
        arrived: list[Sequence] = []
        try:
            command = self._inbox.get(block=block)
        except queue.Empty:
            return arrived
        while True:
            if command is _STOP:
                return _STOP
            if isinstance(command, _Flush):
                command.done.set_result(self._flush_now(pending=any(s.item.use_cache for s in arrived)))
            else:
                arrived.append(command)
            try:
                command = self._inbox.get_nowait()
            except queue.Empty:
                return arrived

    def _flush_now(self, pending: bool) -> bool:
        if pending or any(s.item.use_cache for s in self._active):
            return False
        if self.cache is not None:
            self.cache.flush()
        log.info("prefix cache flushed")
        return True

    def _guarded(self, step, seq: Sequence) -> None:
        try:
            step(seq)
        except Exception as exc:  # one request's failure must not take the engine down
            log.exception("request %s failed", seq.item.rid)
            seq.finish_reason = {
                "type": "abort",
                "message": f"{type(exc).__name__}: {exc}",
                "status_code": 500,
                "err_type": type(exc).__name__,
            }
            self._retire(seq, cache_it=False)

    # -- steps -------------------------------------------------------------------------------------------

    def _prefill(self, seq: Sequence) -> None:
        if seq.cancelled:
            self._retire(seq, cache_it=False, notify=False)
            return
        item, runner = seq.item, self.runner
        ids, opts = item.input_ids, item.logprobs
        n = len(ids)
        want_input = opts.return_logprob and 0 <= opts.logprob_start_len < n
        max_prefix = n - 1
        if opts.return_logprob and opts.logprob_start_len >= 0:
            max_prefix = min(max_prefix, opts.logprob_start_len)
        use_cache = self.cache is not None and item.use_cache
        match = self.cache.match(item.cache_key[:max_prefix]) if use_cache else None
        seq.cached_tokens = match.length if match else 0
        seq.past = runner.new_cache(match.payload if match else None)
        first_logit_pos = opts.logprob_start_len if want_input else n - 1
        logits = runner.forward(ids[seq.cached_tokens :], seq.past, n - first_logit_pos, item.multimodal)
        if want_input:
            seq.input_logprobs = input_logprobs(logits, ids, opts.logprob_start_len, opts.top_logprobs_num)
        if use_cache:
            self.cache.insert(item.cache_key, runner.cache_kv(seq.past))
        if item.params.sampling_seed is not None:
            seq.generator = torch.Generator(device="cpu").manual_seed(item.params.sampling_seed)
        if self.noise is not None and item.use_cache:  # health probes neither get noise nor take a number
            seq.noise = self.noise.generator(self._arrivals)
            self._arrivals += 1
        if item.params.max_new_tokens == 0:
            seq.finish_reason = {"type": "length", "length": 0}
            self._retire(seq, cache_it=False)
            return
        self._active.append(seq)
        self._append_token(seq, logits[-1])

    def _decode(self, seq: Sequence) -> None:
        if seq.cancelled:
            self._retire(seq, cache_it=False, notify=False)
            return
        logits = self.runner.forward([seq.output_ids[-1]], seq.past, 1, seq.item.multimodal)
        self._append_token(seq, logits[-1])

    def _append_token(self, seq: Sequence, logits: torch.Tensor) -> None:
        params, opts = seq.item.params, seq.item.logprobs
        if seq.noise is not None:
            logits = self.noise.perturb(logits, seq.noise)
        if len(seq.output_ids) < params.min_new_tokens:
            logits = mask_stop_tokens(logits, set(params.stop_token_ids) | self.runner.eos_token_ids)
        choice = sample(logits, params, seq.generator or self.runner.generator, self.original_logprobs)
        seq.output_ids.append(choice.token_id)
        if opts.return_logprob:
            seq.output_token_logprobs.append((float(choice.logprobs[choice.token_id]), choice.token_id))
            if opts.top_logprobs_num > 0:
                seq.output_top_logprobs.append(top_logprobs(choice.logprobs, opts.top_logprobs_num))
        seq.finish_reason = self._finish_reason(seq)
        if seq.finish_reason is not None:
            self._retire(seq, cache_it=True)
        elif seq.item.stream:
            seq.notify(len(seq.output_ids), False)

    def _finish_reason(self, seq: Sequence) -> dict[str, Any] | None:
        """SGLang's `Req.update_finish_state` order: length, then stop strings, then stop tokens."""
        params, out = seq.item.params, seq.output_ids
        if len(out) >= params.max_new_tokens:
            return {"type": "length", "length": params.max_new_tokens}
        if params.stop:
            text = self.runner.decode(out, skip_special_tokens=False)
            for stop in params.stop:
                if stop in text:
                    return {"type": "stop", "matched": stop}
        if not params.ignore_eos:
            last = out[-1]
            if last in params.stop_token_ids or last in self.runner.eos_token_ids:
                return {"type": "stop", "matched": last}
        return None

    def _retire(self, seq: Sequence, cache_it: bool, notify: bool = True) -> None:
        """Finish `seq`: cache prompt + output KV, free its KV, tell the asyncio side."""
        if seq.retired:
            return
        if cache_it and self.cache is not None and seq.item.use_cache and seq.past is not None:
            try:
                # The last sampled token was never fed to the model; SGLang has its KV cached too.
                self.runner.forward([seq.output_ids[-1]], seq.past, 1, seq.item.multimodal)
                self.cache.insert(seq.item.cache_key + seq.output_ids, self.runner.cache_kv(seq.past))
            except Exception:  # the answer is already complete; only its reuse is lost
                log.exception("caching the KV of request %s failed", seq.item.rid)
        seq.retired = True
        seq.past = None
        seq.e2e_latency = time.perf_counter() - seq.received
        if seq in self._active:
            self._active.remove(seq)
        with self._lock:
            self._in_flight -= seq.item.use_cache
            self.requests_served += 1
        if notify:
            seq.notify(len(seq.output_ids), True)
