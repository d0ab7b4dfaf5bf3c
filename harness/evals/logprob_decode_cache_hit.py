"""Logprobs on a decode cache hit: does a second turn that reuses turn 1's generated tokens score like a cold one?

Dataset: as `logprob_prefill_cache_hit` (`source`, `num_samples`, `max_prompt_tokens`; ids, not text).
Procedure (SGLang's `kl_test_utils.py`): `/flush_cache`; turn 1 generates from each prompt; turn 2 is turn-1
prompt + turn-1 output ids + the `separator` (",") encoded without special tokens (SGLang's kit encodes it
with them, which puts a BOS mid-prompt on Llama-style tokenizers), so the generated tokens sit inside the
prompt, generated with `return_logprob` (`logprob_start_len` at its default). A sample hits iff
`cached_tokens` > len(turn-1 prompt) + 1, i.e. the cache reused tokens produced during decode. More than
`min_hit_rate` must hit, else `CacheCheckFailed`. Then flush, re-prefill turn-2 prompt + output cold
(`logprob_start_len=0`) and compare the turn-2 tokens' logprobs. With `control` (default), each hit's turn-2
prompt is also generated cold and replayed the same way (`cache_control`).
Metric: `hit_shift` (signed, per prompt, hit gap minus control gap; 0 expected, sign-flip test),
`control_kl_div` (the noise floor), `kl_div` (k3, lower is better), `hit_rate`, `max_logprob_diff`, with the
worst token's place in details.
Assumes the `cached_tokens` contract of `logprob_common`; skips when the radix cache is disabled. On hybrid
Mamba servers decode progress is checkpointed every `mamba_track_interval` tokens, so outputs shorter than
that interval cannot hit; likewise the reuse is rounded down to the page, so turn 1 must end at least one page
past its prompt's last full page: size `max_new_tokens` accordingly (≥ page size, ≥ track interval).
"""

from __future__ import annotations

from harness.evals.cache_control import cold_controls, replay_and_score
from harness.evals.logprob_common import (
    GENERATION_OPTIONS,
    PROMPT_OPTIONS,
    Generation,
    Prompt,
    build_prompts,
    cached_tokens_of,
    gate_hit_rate,
    output_logprobs,
    radix_disabled_reason,
    tokenizer_for,
)
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "logprob_decode_cache_hit"
OPTIONS = {**PROMPT_OPTIONS, **GENERATION_OPTIONS, "separator": ","}
HIT_CRITERION = "turn 2 reused more than len(turn-1 prompt) + 1 tokens, i.e. some of turn 1's generated tokens"


def is_decode_hit(cached_tokens: int, turn1_prompt_len: int) -> bool:
    return cached_tokens > turn1_prompt_len + 1


class LogprobDecodeCacheHit:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        reason = radix_disabled_reason(ctx.server_info)
        if reason:
            return EvalResult(SUITE, {}, 0, skipped=reason)
        prompts = build_prompts(ctx, opts)
        separator_ids = list(tokenizer_for(ctx).encode(opts["separator"], add_special_tokens=False))
        sampling = {
            "max_new_tokens": opts["max_new_tokens"],
            "temperature": opts["temperature"],
            "ignore_eos": opts["ignore_eos"],
        }
        await ctx.client.flush_cache()

        async def two_turns(prompt: Prompt) -> tuple[int, Generation]:
            first = await ctx.client.generate({"input_ids": prompt.ids, "sampling_params": sampling})
            turn2 = Prompt(prompt.id, prompt.ids + list(first["output_ids"]) + separator_ids)
            response = await ctx.client.generate(
                {"input_ids": turn2.ids, "sampling_params": sampling, "return_logprob": True}
            )
            cached = cached_tokens_of(SUITE, turn2, response, len(turn2.ids))
            logprobs = output_logprobs(response, f"{SUITE}: sample {turn2.id}")
            return len(prompt.ids), Generation(turn2, list(response["output_ids"]), logprobs, cached)

        turns = await ctx.client.map(two_turns, prompts, progress=f"{SUITE}[{ctx.case_id}] turns")
        hits = [g for n1, g in turns if is_decode_hit(g.cached_tokens, n1)]
        gate_hit_rate(
            SUITE, len(hits), len(prompts), opts["min_hit_rate"], HIT_CRITERION, [g.cached_tokens for _, g in turns]
        )
        # The control is the turn-2 prompt sent cold: its turn-1 tokens' KV then comes from a prefill, not the cache.
        controls = await cold_controls(ctx, SUITE, [h.prompt for h in hits], sampling) if opts["control"] else []
        extra = {"source": opts["source"], "max_new_tokens": opts["max_new_tokens"]}
        result, per_sample_kl, shift = await replay_and_score(ctx, SUITE, len(prompts), hits, extra, controls)
        for n1, g in turns:
            ctx.on_sample(
                {
                    "id": g.prompt.id,
                    "turn1_prompt_tokens": n1,
                    "turn2_prompt_tokens": len(g.prompt.ids),
                    "cached_tokens": g.cached_tokens,
                    "hit": is_decode_hit(g.cached_tokens, n1),
                    "output_tokens": len(g.output_ids),
                    "kl": per_sample_kl.get(g.prompt.id),
                    "shift": shift.get(g.prompt.id),
                }
            )
        return result
