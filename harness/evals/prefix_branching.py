"""Prefix branching: does the prefix cache reuse exactly the positions it should where requests diverge?

Data: synthetic token ids (no data set): one prefix of P ids, then three 64-id suffixes that differ from their
first id, so the requests branch exactly at P. Ids are drawn (seeded) from the tokenizer's non-special ids and
sent as `input_ids`, so positions are exact (SGLang's `prefix_cache_branching_kit.py` sends "hi" * 257 as text
and relies on the tokenizer). Per P: `/flush_cache`, then the three requests one after another,
`max_new_tokens=1`. Source of the pattern: SGLang's Qwen3-Next branching test; checked on a real 0.5.17 server
(tiny Qwen2 at page 1, tiny Qwen3-Next with extra_buffer: [0, 0, 256] for P=257, [0, 0, 64] for P=100).
Metric: `branch_mismatches` (requests whose `cached_tokens` differ from the expectation; 0 expected, lower is
better). Any mismatch raises `CacheCheckFailed` with observed vs expected per P.

Expected `cached_tokens` come from what the server is (`classify_cache`), never from a table of numbers:
- attention radix cache: [0, ⌊P/page⌋·page, ⌊P/page⌋·page] (request 2 reuses the prefix request 1 wrote);
- hybrid Mamba, `extra_buffer` (or `extra_buffer_lazy`): [0, 0, ⌊P/g⌋·g], g = max(mamba chunk, page size),
  the chunk being the model config's `mamba_chunk_size` or FLA's 64 (SGLang's `mamba_cache_chunk_size`):
  recurrent state exists only at tracked points, request 2 materialises a checkpoint at the branch, request 3
  hits it;
- hybrid Mamba, `no_buffer`: [0, 0, 0] (only decode continuations are ever reused);
- radix cache disabled: the suite skips.
Under EAGLE-family speculation (EAGLE, EAGLE3, and NEXTN/MTP, which SGLang runs as EAGLE) the radix tree is keyed
by token bigrams (0.5.17 `RadixKey.maybe_to_bigram_view`, `SpeculativeAlgorithm.is_eagle`), so a prefix of P
tokens matches P−1: every count above uses P−1 (seen on the H200: canary/eagle3 [0, 256, 256] for P=257).
Hybrid or not: `server_info.uses_mamba_radix_cache` where the server reports it (0.5.17 does), else the
architecture from `/model_info` against `HYBRID_ARCHITECTURES`. The strategy: `mamba_radix_cache_strategy`
(legacy `mamba_scheduler_strategy`). A hybrid model on `auto` (its resolution depends on the SGLang version),
or a Mamba strategy on an architecture not known to be hybrid, raises `UnknownCacheLayout`: set the suite
option `cache_kind` to say what the server is.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.client.http import RequestFailed
from harness.errors import ConfigError, unknown_choice
from harness.evals.logprob_common import CacheCheckFailed, Prompt, cached_tokens_of, tokenizer_for
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "prefix_branching"
FLA_CHUNK_SIZE = 64
CACHE_KINDS = ("auto", "attention", "mamba_extra_buffer", "mamba_no_buffer")
# Architectures SGLang serves with a hybrid (attention + linear/Mamba state) radix cache.
HYBRID_ARCHITECTURES = frozenset(
    {
        "Qwen3NextForCausalLM",
        "Qwen3_5ForConditionalGeneration",
        "Qwen3_5MoeForConditionalGeneration",
        "Qwen3_5ForCausalLM",
        "Qwen3_5MoeForCausalLM",
        "NemotronHForCausalLM",
        "FalconH1ForCausalLM",
        "KimiLinearForCausalLM",
        "GraniteMoeHybridForCausalLM",
        "JambaForCausalLM",
    }
)
EXTRA_BUFFER_STRATEGIES = ("extra_buffer", "extra_buffer_lazy")
# speculative algorithms whose radix cache keys are bigrams (SGLang's SpeculativeAlgorithm.is_eagle; NEXTN -> EAGLE)
BIGRAM_KEY_ALGORITHMS = frozenset({"EAGLE", "EAGLE3", "NEXTN", "MTP", "FROZEN_KV_MTP"})

OPTIONS = {"prefix_lengths": [257, 100], "suffix_length": 64, "cache_kind": "auto", "mamba_chunk_size": None, "seed": 0}


class UnknownCacheLayout(ConfigError):
    """The server is a combination the suite has no expectation for."""


@dataclass(frozen=True)
class CacheLayout:
    kind: str  # "disabled" | "attention" | "mamba_extra_buffer" | "mamba_no_buffer"
    page_size: int
    granularity: int  # what a reused prefix is rounded down to
    evidence: str
    bigram_keys: bool = False  # EAGLE-family speculation: a prefix of P tokens matches P - 1


def mamba_strategy(server_info: Mapping[str, Any]) -> str | None:
    return server_info.get("mamba_radix_cache_strategy", server_info.get("mamba_scheduler_strategy"))


def classify_cache(
    server_info: Mapping[str, Any],
    model_info: Mapping[str, Any],
    cache_kind: str = "auto",
    mamba_chunk: int | None = None,
) -> CacheLayout:
    """What kind of prefix cache the server runs, from its own reports (or `cache_kind` when set)."""
    from dataclasses import replace

    layout = _classify(server_info, model_info, cache_kind, mamba_chunk)
    algorithm = str(server_info.get("speculative_algorithm") or "").upper()
    if algorithm in BIGRAM_KEY_ALGORITHMS:
        return replace(
            layout, bigram_keys=True, evidence=f"{layout.evidence}; bigram keys (speculative_algorithm={algorithm})"
        )
    return layout


def _classify(server_info, model_info, cache_kind: str, mamba_chunk: int | None) -> CacheLayout:
    page = int(server_info.get("page_size") or 1)
    chunk = max(mamba_chunk or FLA_CHUNK_SIZE, page)
    if server_info.get("disable_radix_cache"):
        return CacheLayout("disabled", page, page, "disable_radix_cache=True")
    if cache_kind not in CACHE_KINDS:
        raise unknown_choice("cache_kind", cache_kind, CACHE_KINDS, where=f"{SUITE} option")
    if cache_kind != "auto":
        return CacheLayout(
            cache_kind, page, chunk if cache_kind == "mamba_extra_buffer" else page, f"cache_kind={cache_kind}"
        )
    strategy = mamba_strategy(server_info)
    archs = list(model_info.get("architectures") or [])
    uses_mamba = server_info.get("uses_mamba_radix_cache")
    if isinstance(uses_mamba, bool):
        hybrid, why = uses_mamba, f"uses_mamba_radix_cache={uses_mamba}"
    else:
        hybrid = any(a in HYBRID_ARCHITECTURES for a in archs)
        why = f"architectures={archs}" + (" (hybrid)" if hybrid else "")
    if not hybrid:
        if strategy in (None, "auto") or uses_mamba is False:
            return CacheLayout("attention", page, page, f"attention radix cache ({why}), page_size {page}")
        raise UnknownCacheLayout(
            f"{SUITE}: the server reports mamba_radix_cache_strategy={strategy!r} but {why} is not a known hybrid "
            f"Mamba model; set the {SUITE} option cache_kind to one of {', '.join(CACHE_KINDS[1:])}"
        )
    if strategy in EXTRA_BUFFER_STRATEGIES:
        return CacheLayout(
            "mamba_extra_buffer",
            page,
            chunk,
            f"hybrid Mamba {strategy} ({why}), g=max({mamba_chunk or FLA_CHUNK_SIZE}, page {page})={chunk}",
        )
    if strategy == "no_buffer":
        return CacheLayout("mamba_no_buffer", page, page, f"hybrid Mamba no_buffer ({why})")
    raise UnknownCacheLayout(
        f"{SUITE}: hybrid Mamba model ({why}) with mamba_radix_cache_strategy={strategy!r}: how SGLang resolves it "
        f"depends on the version, so the expected cache hits are unknown; start the server with an explicit "
        f"--mamba-radix-cache-strategy or set the {SUITE} option cache_kind"
    )


def expected_branch_hits(layout: CacheLayout, prefix_len: int) -> list[int]:
    """`cached_tokens` of the three branching requests (prefix of `prefix_len`, suffixes diverging after it)."""
    matchable = prefix_len - 1 if layout.bigram_keys else prefix_len
    reused = matchable // layout.granularity * layout.granularity
    if layout.kind == "attention":
        return [0, reused, reused]
    if layout.kind == "mamba_extra_buffer":
        return [0, 0, reused]
    if layout.kind == "mamba_no_buffer":
        return [0, 0, 0]
    raise ValueError(f"no branching expectation for cache kind {layout.kind!r}")


async def fetch_model_info(ctx: EvalContext) -> dict:
    """`/model_info` (newer SGLang) or `/get_model_info`; {} when the server has neither."""
    for path in ("/model_info", "/get_model_info"):
        try:
            return await ctx.client.get_json(path)
        except RequestFailed as exc:
            if exc.status != 404:
                raise
    return {}


def config_mamba_chunk(model_path: str) -> int | None:
    """`mamba_chunk_size` from a local model's config.json, as SGLang reads it; None when absent."""
    path = Path(model_path, "config.json")
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("mamba_chunk_size")
    return int(value) if value else None


def branch_prompts(tokenizer, prefix_len: int, suffix_len: int, seed: int) -> list[Prompt]:
    """Three prompts sharing `prefix_len` ids and diverging at the first suffix id."""
    special = set(tokenizer.all_special_ids)
    pool = [i for i in range(len(tokenizer)) if i not in special]
    rng = random.Random(seed * 100_003 + prefix_len)
    prefix = [rng.choice(pool) for _ in range(prefix_len)]
    firsts = rng.sample(pool, 3)
    return [
        Prompt(f"P{prefix_len}-branch{b}", prefix + [firsts[b]] + [rng.choice(pool) for _ in range(suffix_len - 1)])
        for b in range(3)
    ]


class PrefixBranching:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        chunk = opts["mamba_chunk_size"] or config_mamba_chunk(ctx.model_path)
        layout = classify_cache(ctx.server_info, await fetch_model_info(ctx), opts["cache_kind"], chunk)
        if layout.kind == "disabled":
            return EvalResult(
                SUITE, {}, 0, skipped="the server runs with disable_radix_cache=True: no prefix cache to branch"
            )
        tokenizer = tokenizer_for(ctx)
        rows, mismatches = [], 0
        for prefix_len in opts["prefix_lengths"]:
            await ctx.client.flush_cache()
            observed = []
            for prompt in branch_prompts(tokenizer, int(prefix_len), int(opts["suffix_length"]), int(opts["seed"])):
                response = await ctx.client.generate(
                    {"input_ids": prompt.ids, "sampling_params": {"max_new_tokens": 1, "temperature": 0}}
                )
                observed.append(cached_tokens_of(SUITE, prompt, response, len(prompt.ids)))
            expected = expected_branch_hits(layout, int(prefix_len))
            wrong = sum(o != e for o, e in zip(observed, expected))
            mismatches += wrong
            rows.append({"prefix_len": prefix_len, "observed": observed, "expected": expected, "ok": not wrong})
            ctx.on_sample({"id": f"P{prefix_len}", "observed": observed, "expected": expected, "kind": layout.kind})
        result = EvalResult(
            SUITE,
            {"branch_mismatches": float(mismatches)},
            3 * len(rows),
            {
                "kind": layout.kind,
                "evidence": layout.evidence,
                "page_size": layout.page_size,
                "granularity": layout.granularity,
                "branches": rows,
            },
        )
        if mismatches:
            table = "; ".join(
                f"P={r['prefix_len']}: observed {r['observed']}, expected {r['expected']}" for r in rows if not r["ok"]
            )
            raise CacheCheckFailed(
                f"{SUITE}: the prefix cache reused the wrong number of tokens where requests branch ({table}). "
                f"Expected for {layout.evidence}: " + _rule(layout.kind),
                result,
            )
        return result


def _rule(kind: str) -> str:
    return {
        "attention": "requests 2 and 3 reuse the shared prefix rounded down to the page, request 1 nothing.",
        "mamba_extra_buffer": "only request 3 reuses the prefix, rounded down to g (request 2 creates the checkpoint).",
        "mamba_no_buffer": "no request reuses anything (no_buffer only reuses decode continuations).",
    }[kind]
