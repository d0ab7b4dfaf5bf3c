"""The control arm of the cache-hit suites: the noise floor of their own comparison, measured in the same run.

A cache-hit suite compares each hit's generated-token logprobs with a cold replay of the same ids. On bf16 GPUs
that comparison is noisy without any cache bug: the hit decodes token by token, the replay scores everything in
one prefill, and their kernels round differently (k3 KL 1–5e-3 on the canary, varying run to run). A fixed
ceiling above that noise cannot see a cache bug smaller than it. So every suite also runs a control: the same
request sent cold (`logprob_start_len=0` makes SGLang and the HF engine bypass the prefix cache; `cached_tokens`
must read 0), replayed the same way. Per prompt, the unit is

    u = mean_t(hit_t − hit_replay_t) − mean_t(control_t − control_replay_t)     (nats per token, signed)

which is symmetric about 0 when the cache serves the right state: hit and control differ only in where the
prompt's KV came from. A cache that shifts logprobs moves u by the shift, whatever the kernels' own noise; the
sign-flip test in `harness.verdict.statistics.check_shift` judges it (`hit_shift`), with α and the smallest effect that
counts from thresholds.yaml. `kl_div` (k3, SGLang's definition) stays reported and gated beside it, and
`control_kl_div`, the same k3 on the control, shows the noise floor. Tokens differ between the arms (each samples
its own continuation), so the pairing is by prompt and each arm averages its own tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.evals.logprob_common import (
    CacheCheckFailed,
    Generation,
    Prompt,
    cached_tokens_of,
    check_informative,
    cold_replay,
    output_logprobs,
    summarize_kl,
)
from harness.evals.types import EvalContext, EvalResult


async def cold_controls(ctx: EvalContext, suite: str, prompts: Sequence[Prompt], sampling: dict) -> list[Generation]:
    """Each prompt generated cold, as the hits were generated warm; a control that reports a hit is no control."""

    async def control(prompt: Prompt) -> Generation:
        response = await ctx.client.generate(
            {"input_ids": prompt.ids, "sampling_params": sampling, "return_logprob": True, "logprob_start_len": 0}
        )
        cached = cached_tokens_of(suite, prompt, response, len(prompt.ids))
        if cached:
            raise CacheCheckFailed(
                f"{suite}: sample {prompt.id}: the control generation (logprob_start_len=0) reported cached_tokens="
                f"{cached}; it must run cold (0), or it measures the cache instead of the kernels' noise"
            )
        logprobs = output_logprobs(response, f"{suite}: sample {prompt.id}: control")
        return Generation(prompt, list(response["output_ids"]), logprobs, cached)

    return await ctx.client.map(control, prompts, progress=f"{suite}[{ctx.case_id}] control")


def mean_gap(generated: Sequence[float], replayed: Sequence[float]) -> float:
    """mean_t(generated_t − replayed_t): the signed gap of one generation to its cold replay."""
    if len(generated) != len(replayed) or not generated:
        raise ValueError(f"{len(generated)} generated vs {len(replayed)} replayed logprobs")
    return math.fsum(g - r for g, r in zip(generated, replayed)) / len(generated)


def shift_units(
    hits: Sequence[Generation],
    hit_cold: Sequence[Sequence[float]],
    controls: Sequence[Generation],
    control_cold: Sequence[Sequence[float]],
) -> dict[str, float]:
    """Per prompt id present in both arms with generated tokens: hit gap minus control gap."""
    control_gap = {c.prompt.id: mean_gap(c.logprobs, cold) for c, cold in zip(controls, control_cold) if c.logprobs}
    return {
        h.prompt.id: mean_gap(h.logprobs, cold) - control_gap[h.prompt.id]
        for h, cold in zip(hits, hit_cold)
        if h.logprobs and h.prompt.id in control_gap
    }


def control_kl(controls: Sequence[Generation], control_cold: Sequence[Sequence[float]]) -> float:
    """k3 KL of the controls against their replays: the noise floor the hits' `kl_div` sits on."""
    pairs = [(c.prompt.id, cold, c.logprobs) for c, cold in zip(controls, control_cold) if c.logprobs]
    return summarize_kl(pairs).kl_div


async def replay_and_score(
    ctx: EvalContext,
    suite: str,
    n: int,
    hits: Sequence[Generation],
    extra: dict,
    controls: Sequence[Generation] = (),
) -> tuple[EvalResult, dict[str, float], dict[str, float]]:
    """Cold-replay the hits (and the controls, in the same flush) and score them: the EvalResult both suites
    return, the per-sample KL and the per-prompt shift units (empty without controls)."""
    compared = [h for h in hits if h.output_ids]
    controls = [c for c in controls if c.output_ids]
    cold = await cold_replay(ctx, suite, [*compared, *controls])
    hit_cold, control_cold = cold[: len(compared)], cold[len(compared) :]
    check_informative(suite, hit_cold)
    summary = summarize_kl([(h.prompt.id, c, h.logprobs) for h, c in zip(compared, hit_cold)])
    metrics = {"kl_div": summary.kl_div, "hit_rate": len(hits) / n, "max_logprob_diff": summary.max_abs_gap}
    units: dict[str, float] = {}
    if controls:
        units = shift_units(compared, hit_cold, controls, control_cold)
        metrics |= {
            "hit_shift": math.fsum(units.values()) / len(units),
            "control_kl_div": control_kl(controls, control_cold),
        }
    result = EvalResult(
        suite=suite,
        n=n,
        metrics=metrics,
        details={
            "num_samples": n,
            "num_hits": len(hits),
            "compared_tokens": summary.tokens,
            "worst_token": summary.worst,
            "max_sample_kl": max(summary.per_sample.values()),
            "mean_cached_tokens": sum(h.cached_tokens for h in hits) / max(len(hits), 1),
            **({"num_controls": len(controls), "shift_units": len(units)} if controls else {}),
            **extra,
        },
        units={"hit_shift": list(units.values())} if units else {},
    )
    return result, summary.per_sample, units
