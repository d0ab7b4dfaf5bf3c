"""What the two logprob cache-hit evals share: prompts, hit gates, the cold replay and the k3 KL estimator.

Follows SGLang's own `python/sglang/test/kl_test_utils.py`: prompts are token ids (LongBench-v2 by default,
text = context + " " + question, truncated to a token budget with the model's tokenizer); a request that hit
the prefix cache is compared with a cold re-prefill of prompt + output (`max_new_tokens=0`,
`logprob_start_len=0`, after a flush) through the k3 estimator mean((e^r − 1) − r), r = cold − hit, per
sequence, then averaged over sequences.

Assumes SGLang's `cached_tokens` contract (seen on a real 0.5.17 server): at least the last prompt token is
always computed, so 0 ≤ cached_tokens < prompt length; and a request with `logprob_start_len=0` bypasses the
cache, so the replay must report 0 — otherwise it is no cold reference and the comparison would pass vacuously.
Violations raise `CacheCheckFailed` (an AssertionError) with a message naming the sample and the numbers.
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, ProtocolError
from harness.evals.data import load_records
from harness.evals.types import EvalContext, EvalResult

CANARY_SOURCE = "canary"
SMOKE_SAMPLES = 4
PROMPT_OPTIONS = {
    "source": "THUDM/LongBench-v2",  # or "canary", or a local .txt / .jsonl / .json file
    "subset": None,
    "split": "train",
    "num_samples": 48,
    "max_prompt_tokens": 3000,
}
# temperature 1 and ignore_eos as SGLang's kit: the replay scores whatever was sampled, and at temperature 1
# output logprobs equal the unscaled ones the replay returns.
# control: also run every prompt cold and test the hits' signed gap against the controls' (harness.evals.cache_control).
GENERATION_OPTIONS = {
    "max_new_tokens": 512,
    "temperature": 1.0,
    "ignore_eos": True,
    "min_hit_rate": 0.5,
    "control": True,
}


class CacheCheckFailed(AssertionError):
    """The server broke the cache contract the check relies on; `result` holds what was measured so far."""

    def __init__(self, message: str, result: EvalResult | None = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Prompt:
    id: str
    ids: list[int]


@dataclass
class Generation:
    """One request that hit the cache: what to replay and the logprobs it reported."""

    prompt: Prompt
    output_ids: list[int]
    logprobs: list[float]
    cached_tokens: int


# -- prompts --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def tokenizer_for(ctx: EvalContext):
    return load_tokenizer(ctx.tokenizer_path or ctx.model_path)


def canary_text(index: int, min_chars: int) -> str:
    """Deterministic GSM8K-style prose (the canary's own vocabulary), different for every index."""
    from harness.evals.synthetic_gsm8k import draw_problem

    rng, parts, size = random.Random(10_000 + index), [], 0
    while size < min_chars:
        record = draw_problem(rng).to_gsm8k()
        parts.append(f"{record['question']} {record['answer']}")
        size += len(parts[-1]) + 1
    return " ".join(parts)


def record_prompt(record: Mapping[str, Any], where: str) -> str | list[int]:
    """The prompt a record carries: `input_ids`, `text`/`prompt`, or LongBench's context + " " + question."""
    if "input_ids" in record:
        return [int(x) for x in record["input_ids"]]
    for key in ("text", "prompt"):
        if isinstance(record.get(key), str):
            return record[key]
    if "context" in record:
        return f"{record.get('context', '')} {record.get('question', '')}"
    raise ConfigError(
        f"{where}: a prompt record needs 'input_ids', 'text', 'prompt' or 'context' (+ 'question'); "
        f"got keys {sorted(record)}"
    )


def _raw_prompts(opts: Mapping[str, Any], n: int, base_dir: str) -> list[tuple[str, str | list[int]]]:
    source = str(opts["source"])
    if source == CANARY_SOURCE:
        return [(f"canary-{i}", canary_text(i, 8 * opts["max_prompt_tokens"])) for i in range(n)]
    local = Path(source) if Path(source).is_absolute() else Path(base_dir, source)
    if local.suffix == ".txt":
        if not local.exists():
            raise ConfigError(f"prompt file not found: {local} (from source {source!r})")
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", local.read_text(encoding="utf-8")) if p.strip()]
        return [(f"{local.name}-{i}", p) for i, p in enumerate(paragraphs[:n])]
    if local.suffix in (".jsonl", ".json") or local.exists():
        records = load_records(source, opts["split"], subset=opts["subset"], base_dir=base_dir)[:n]
        return [
            (str(r.get("_id", r.get("id", f"{local.name}-{i}"))), record_prompt(r, f"{local}[{i}]"))
            for i, r in enumerate(records)
        ]
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError(
            f"prompt source {source!r} needs the `datasets` package, or give a local file / 'canary'"
        ) from exc
    # Streaming: LongBench-v2 contexts are long; read only the first n records, as SGLang's kit does.
    stream = datasets.load_dataset(source, opts["subset"], split=opts["split"], streaming=True)
    out = []
    for i, row in enumerate(stream):
        if i >= n:
            break
        out.append((str(row.get("_id", f"{source}-{i}")), record_prompt(row, f"{source}[{i}]")))
    return out


def build_prompts(ctx: EvalContext, opts: Mapping[str, Any]) -> list[Prompt]:
    """`num_samples` prompts (`--harness-limit` and smoke mode cap it) as ids truncated to `max_prompt_tokens`."""
    n = ctx.limit or opts["num_samples"]
    if ctx.smoke:
        n = min(n, SMOKE_SAMPLES)
    tokenizer, budget = None, int(opts["max_prompt_tokens"])
    prompts = []
    for prompt_id, raw in _raw_prompts(opts, n, ctx.base_dir):
        if isinstance(raw, str):
            tokenizer = tokenizer or tokenizer_for(ctx)
            raw = tokenizer.encode(raw)
        if len(raw) < 2:
            raise ConfigError(
                f"prompt {prompt_id!r} from {opts['source']!r} has {len(raw)} token(s); a cache hit needs at least 2"
            )
        prompts.append(Prompt(prompt_id, raw[:budget]))
    if not prompts:
        raise ConfigError(f"prompt source {opts['source']!r} gave no prompts")
    return prompts


# -- responses ------------------------------------------------------------------------------------------
def cached_tokens_of(suite: str, prompt: Prompt, response: Mapping[str, Any], prompt_len: int) -> int:
    """`meta_info.cached_tokens`, checked against what SGLang can report for a prompt of `prompt_len` ids."""
    meta = response.get("meta_info", {})
    if "cached_tokens" not in meta:
        raise ProtocolError(
            f"{suite}: sample {prompt.id}: the server's meta_info has no 'cached_tokens' (it has "
            f"{', '.join(sorted(meta)) or 'nothing'}): without it no cache hit can be seen, so this suite cannot "
            "judge this server (an SGLang older or newer than the API the harness knows?)"
        )
    cached = meta["cached_tokens"]
    if not isinstance(cached, int) or isinstance(cached, bool):
        raise CacheCheckFailed(
            f"{suite}: sample {prompt.id}: meta_info.cached_tokens is {cached!r}, expected an integer"
        )
    if not 0 <= cached < prompt_len:
        raise CacheCheckFailed(
            f"{suite}: sample {prompt.id}: the server reported cached_tokens={cached} for a prompt of {prompt_len} "
            f"tokens; SGLang always computes at least the last prompt token, so 0 <= cached_tokens < {prompt_len}. "
            "The server misreports its prefix cache."
        )
    return cached


def output_logprobs(response: Mapping[str, Any], where: str = "") -> list[float]:
    """Logprobs of the generated tokens (`output_token_logprobs` holds (logprob, id, text) triples)."""
    return [
        finite_logprob(entry[0], where, i) for i, entry in enumerate(response["meta_info"]["output_token_logprobs"])
    ]


def finite_logprob(value: Any, where: str, index: int) -> float:
    """A logprob as float; NaN or ±inf (which SGLang's orjson answers carry as null) fail with where they were."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise CacheCheckFailed(
        f"{where}: token {index}: the server returned logprob {value!r}, not a finite number (orjson, which SGLang "
        "answers with, writes NaN and ±inf as null): the model's numerics broke (an overflow, a bad kernel)"
    )


def gate_hit_rate(suite: str, n_hits: int, n: int, min_hit_rate: float, criterion: str, cached: Sequence[int]) -> float:
    """Raise unless more than `min_hit_rate` of the samples hit: a KL over too few hits proves nothing."""
    rate = n_hits / n
    if rate <= min_hit_rate:
        raise CacheCheckFailed(
            f"{suite}: only {n_hits} of {n} samples hit the prefix cache "
            f"(hit_rate {rate:.3f}; a hit means {criterion}); "
            f"more than {min_hit_rate:g} must hit for the logprob comparison to mean anything. "
            f"cached_tokens seen: {list(cached)[:16]}. Check that the radix cache is on and large enough, "
            "and that the server reports meta_info.cached_tokens.",
            EvalResult(suite, {"hit_rate": rate, "kl_div": math.inf}, n, {"n_hits": n_hits}),
        )
    return rate


def same_token(replayed: int, generated: int) -> bool:
    """SGLang reports input ids >= vocab_size - 1 as 0 in `input_token_logprobs` (it clips padded image-token
    hashes that way, scheduler output processor), so a replayed 0 stands for the vocabulary's last id too."""
    return replayed == generated or replayed == 0


async def cold_replay(ctx: EvalContext, suite: str, hits: Sequence[Generation]) -> list[list[float]]:
    """Flush, then re-prefill prompt + output with `logprob_start_len=0`; the generated tokens' logprobs."""
    await ctx.client.flush_cache()

    async def replay(hit: Generation) -> list[float]:
        ids = hit.prompt.ids + hit.output_ids
        response = await ctx.client.generate(
            {
                "input_ids": ids,
                "sampling_params": {"max_new_tokens": 0, "temperature": 1.0},
                "return_logprob": True,
                "logprob_start_len": 0,
            }
        )
        cached = cached_tokens_of(suite, hit.prompt, response, len(ids))
        if cached:
            raise CacheCheckFailed(
                f"{suite}: sample {hit.prompt.id}: the cold replay (after /flush_cache, logprob_start_len=0) reported "
                f"cached_tokens={cached}; it must recompute everything (0), or it is no cold reference."
            )
        entries = response["meta_info"]["input_token_logprobs"]
        tail = entries[-len(hit.output_ids) :]
        replayed_ids = [int(e[1]) for e in tail]
        if len(entries) != len(ids) or not all(map(same_token, replayed_ids, hit.output_ids)):
            at = next((i for i, p in enumerate(zip(replayed_ids, hit.output_ids)) if not same_token(*p)), len(tail))
            raise CacheCheckFailed(
                f"{suite}: sample {hit.prompt.id}: the cold replay of {len(ids)} ids returned {len(entries)} "
                f"input_token_logprobs whose last {len(tail)} ids differ from the {len(hit.output_ids)} generated ids "
                f"at index {at} (replay {replayed_ids[at : at + 4]}, generated {hit.output_ids[at : at + 4]})"
            )
        where = f"{suite}: sample {hit.prompt.id}: cold replay"
        return [finite_logprob(e[0], where, len(hit.prompt.ids) + i) for i, e in enumerate(tail)]

    return await ctx.client.map(replay, hits, progress=f"{suite}[{ctx.case_id}] replay")


# -- the estimator --------------------------------------------------------------------------------------
def k3_per_token(cold: Sequence[float], hit: Sequence[float]) -> list[float]:
    """(e^r − 1) − r with r = cold − hit, per token: ≥ 0, and 0 only where the logprobs agree."""
    if len(cold) != len(hit):
        raise ValueError(f"k3: {len(cold)} cold logprobs vs {len(hit)} hit logprobs")
    out = []
    for c, h in zip(cold, hit):
        r = c - h
        out.append(math.inf if r > 700 else math.expm1(r) - r)
    return out


@dataclass
class KLSummary:
    kl_div: float
    per_sample: dict[str, float] = field(default_factory=dict)
    max_abs_gap: float = 0.0
    worst: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0


def summarize_kl(pairs: Sequence[tuple[str, Sequence[float], Sequence[float]]]) -> KLSummary:
    """Mean over sequences of the per-sequence mean k3; also the largest |cold − hit| and where it is."""
    summary = KLSummary(kl_div=math.nan)
    for sample_id, cold, hit in pairs:
        per_token = k3_per_token(cold, hit)
        if not per_token:
            continue
        summary.per_sample[sample_id] = sum(per_token) / len(per_token)
        summary.tokens += len(per_token)
        for index, (c, h) in enumerate(zip(cold, hit)):
            if abs(c - h) > summary.max_abs_gap or not summary.worst:
                summary.max_abs_gap = abs(c - h)
                summary.worst = {"sample": sample_id, "token_index": index, "cold_logprob": c, "hit_logprob": h}
    if not summary.per_sample:
        raise ValueError("k3: no sample with generated tokens to compare")
    summary.kl_div = sum(summary.per_sample.values()) / len(summary.per_sample)
    return summary


def check_informative(suite: str, cold: Sequence[Sequence[float]]) -> None:
    """Raise when every replayed logprob is the same number: the model's output ignores its input (e.g. an
    lm_head that never loaded serves -ln(vocab) everywhere), and a KL of 0 would then prove nothing."""
    values = [v for sample in cold for v in sample]
    if len(values) > 1 and max(values) - min(values) < 1e-6:
        raise CacheCheckFailed(
            f"{suite}: all {len(values)} replayed logprobs equal {values[0]:.6f} (uniform over "
            f"{math.exp(-values[0]):.0f} tokens if that is -ln(vocab)): the model's output does not depend on its "
            "input, so the cache comparison is vacuous. Check that the checkpoint's weights loaded (an lm_head "
            "missing from a tied checkpoint stays zero on engines that ignore tie_word_embeddings)."
        )


def radix_disabled_reason(server_info: Mapping[str, Any]) -> str | None:
    if server_info.get("disable_radix_cache"):
        return "the server runs with disable_radix_cache=True, so there is no prefix cache to hit"
    return None
