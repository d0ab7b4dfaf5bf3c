"""Logprobs on a prefill cache hit: does a prompt served from the prefix cache score like a cold one?

Dataset: `source` (default LongBench-v2 `THUDM/LongBench-v2`, train split, streamed, text = context + " "
+ question, as SGLang's `kl_test_utils.py`; or "canary" prose, or a local .txt (blank-line-separated prompts) /
.jsonl / .json file), `num_samples` prompts truncated to `max_prompt_tokens` with the model's tokenizer, sent as ids.
Procedure: `/flush_cache`; warm every prompt with `max_new_tokens=0`; generate with `return_logprob`
(`logprob_start_len` left at its default, -1: 0 would bypass the cache), `temperature` and `ignore_eos` from the
options; a sample hits iff `meta_info.cached_tokens` > 0. More than `min_hit_rate` of the samples must hit, or
`CacheCheckFailed` reports the hit rate. Then flush and re-prefill each hit's prompt + output cold
(`logprob_start_len=0`) and compare the generated tokens' logprobs. With `control` (default), each hit's prompt
is also generated cold and replayed the same way (`cache_control`), separating the cache from kernel noise.
Metric: `hit_shift` (per prompt, the hit's signed gap to its replay minus the control's; 0 expected, judged by
a sign-flip test), `control_kl_div` (the control's k3: the noise floor), `kl_div` (k3 estimator mean((e^r − 1) − r),
r = cold − hit, per sequence then averaged; lower is
better), `hit_rate` (higher is better), `max_logprob_diff` (largest per-token |cold − hit|); details say which
sample and token index holds that gap.
Assumes SGLang's `cached_tokens` contract (see `logprob_common`); skips when the radix cache is disabled, and
on hybrid Mamba `no_buffer` servers, whose prefill never hits by design (only decode continuations do).
"""

from __future__ import annotations

from harness.evals.cache_control import cold_controls, replay_and_score
from harness.evals.logprob_common import (
    GENERATION_OPTIONS,
    PROMPT_OPTIONS,
    Generation,
    build_prompts,
    cached_tokens_of,
    gate_hit_rate,
    output_logprobs,
    radix_disabled_reason,
)
from harness.evals.prefix_branching import UnknownCacheLayout, classify_cache, fetch_model_info
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "logprob_prefill_cache_hit"
OPTIONS = {**PROMPT_OPTIONS, **GENERATION_OPTIONS}
HIT_CRITERION = "cached_tokens > 0 after a max_new_tokens=0 warm-up of the same prompt"


async def no_buffer_reason(ctx: EvalContext) -> str | None:
    """Why a prefill hit cannot happen on this server by design, or None."""
    try:
        layout = classify_cache(ctx.server_info, await fetch_model_info(ctx))
    except UnknownCacheLayout:
        return None  # not knowing the layout is prefix_branching's failure; here the hit gate decides
    if layout.kind == "mamba_no_buffer":
        return "hybrid Mamba no_buffer caches only decode continuations: a prefill warm-up never hits by design"
    return None


class LogprobPrefillCacheHit:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        reason = radix_disabled_reason(ctx.server_info) or await no_buffer_reason(ctx)
        if reason:
            return EvalResult(SUITE, {}, 0, skipped=reason)
        prompts = build_prompts(ctx, opts)
        sampling = {
            "max_new_tokens": opts["max_new_tokens"],
            "temperature": opts["temperature"],
            "ignore_eos": opts["ignore_eos"],
        }
        await ctx.client.flush_cache()

        async def warm(prompt):
            await ctx.client.generate({"input_ids": prompt.ids, "sampling_params": {**sampling, "max_new_tokens": 0}})

        await ctx.client.map(warm, prompts, progress=f"{SUITE}[{ctx.case_id}] warm")

        async def generate(prompt) -> Generation:
            response = await ctx.client.generate(
                {"input_ids": prompt.ids, "sampling_params": sampling, "return_logprob": True}
            )
            cached = cached_tokens_of(SUITE, prompt, response, len(prompt.ids))
            logprobs = output_logprobs(response, f"{SUITE}: sample {prompt.id}")
            return Generation(prompt, list(response["output_ids"]), logprobs, cached)

        generations = await ctx.client.map(generate, prompts, progress=f"{SUITE}[{ctx.case_id}] generate")
        hits = [g for g in generations if g.cached_tokens > 0]
        gate_hit_rate(
            SUITE, len(hits), len(prompts), opts["min_hit_rate"], HIT_CRITERION, [g.cached_tokens for g in generations]
        )
        controls = await cold_controls(ctx, SUITE, [h.prompt for h in hits], sampling) if opts["control"] else []
        extra = {"source": opts["source"], "max_new_tokens": opts["max_new_tokens"]}
        result, per_sample_kl, shift = await replay_and_score(ctx, SUITE, len(prompts), hits, extra, controls)
        for g in generations:
            ctx.on_sample(
                {
                    "id": g.prompt.id,
                    "prompt_tokens": len(g.prompt.ids),
                    "cached_tokens": g.cached_tokens,
                    "hit": g.cached_tokens > 0,
                    "output_tokens": len(g.output_ids),
                    "kl": per_sample_kl.get(g.prompt.id),
                    "shift": shift.get(g.prompt.id),
                }
            )
        return result
