"""Speculative decoding accept length: are the draft model's (or n-gram table's) tokens still accepted?

Dataset: GSM8K questions in SGLang's 5-shot format, with the same data options as the `gsm8k` suite
(`source`, `subset`, `test_split`, `train_split`, `num_shots`), the first `num_questions` by content hash;
greedy, native `/generate`, stops as `gsm8k`.
Procedure: `/flush_cache` (it also resets the server's accept counters), read `/server_info`, run the prompts,
read `/server_info` again. Accept length = Σ completion_tokens / Σ `meta_info.spec_verify_ct` over requests
(tokens committed per target-model verify forward, bonus token included: ≥ 1, at most draft tokens + 1).
Cross-check: `internal_states[0].avg_spec_accept_length` (server-wide since the flush, so it also counts any
other traffic) before and after, and its difference from ours, go to details, not the verdict: the scheduler
folds its counters in only when it logs decode stats (every `decode_log_interval`, default 40, decode steps),
so after a short run it is absent (None); on a real 0.5.17 NGRAM server after 100 requests the two read 1.94
(ours) and 1.84, and after 30 short requests ours read 3.74 with the server's still absent.
Metric: `accept_length` (higher is better; floor in thresholds.yaml, e.g. 95 % of a measured reference).
Skips when `server_info.speculative_algorithm` is unset (EAGLE, EAGLE3, NEXTN/MTP, STANDALONE, NGRAM, ... run).
Raises `CacheCheckFailed`-style `SpecCheckFailed` when a speculative server omits `spec_verify_ct` or reports 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.evals.data import load_records, sha256_text, stable_subsample
from harness.evals.gsm8k import OPTIONS as GSM8K_OPTIONS
from harness.evals.gsm8k import QUESTION_TEMPLATE, build_few_shot_prefix, native_request
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "spec_accept_length"
SMOKE_QUESTIONS = 5
DATA_OPTIONS = ("source", "subset", "test_split", "train_split", "num_shots")  # shared with the gsm8k suite
OPTIONS = {**{key: GSM8K_OPTIONS[key] for key in DATA_OPTIONS}, "num_questions": 200, "max_new_tokens": 256}


class SpecCheckFailed(AssertionError):
    """A speculative server did not report what the accept length is computed from."""


def speculative_algorithm(server_info: Mapping[str, Any]) -> str | None:
    algorithm = server_info.get("speculative_algorithm")
    return None if algorithm in (None, "", "NONE", "None") else str(algorithm)


def server_accept_length(server_info: Mapping[str, Any]) -> float | None:
    """`internal_states[0].avg_spec_accept_length`; None before any verify step (SGLang omits it then)."""
    states = server_info.get("internal_states") or [{}]
    value = states[0].get("avg_spec_accept_length") if isinstance(states[0], Mapping) else None
    return None if value is None else float(value)


def accept_length(metas: list[Mapping[str, Any]], algorithm: str) -> tuple[float, int, int]:
    """Σ completion_tokens / Σ spec_verify_ct, with both sums; raises when the server did not report them."""
    missing = [i for i, m in enumerate(metas) if not isinstance(m.get("spec_verify_ct"), int)]
    if missing:
        raise SpecCheckFailed(
            f"{SUITE}: the server runs speculative_algorithm={algorithm} but {len(missing)} of {len(metas)} responses "
            f"have no integer meta_info.spec_verify_ct (first: request {missing[0]}, meta_info keys "
            f"{sorted(metas[missing[0]])}); the accept length cannot be measured"
        )
    tokens = sum(int(m["completion_tokens"]) for m in metas)
    verifies = sum(int(m["spec_verify_ct"]) for m in metas)
    if verifies <= 0:
        raise SpecCheckFailed(
            f"{SUITE}: speculative_algorithm={algorithm} but Σ spec_verify_ct = {verifies} over {len(metas)} requests "
            f"that generated {tokens} tokens: no verify step ran, so speculative decoding did not run"
        )
    return tokens / verifies, tokens, verifies


class SpecAcceptLength:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        algorithm = speculative_algorithm(ctx.server_info)
        if algorithm is None:
            return EvalResult(
                SUITE, {}, 0, skipped="the server runs without speculative decoding (speculative_algorithm unset)"
            )
        test = load_records(opts["source"], opts["test_split"], subset=opts["subset"], base_dir=ctx.base_dir)
        train = load_records(opts["source"], opts["train_split"], subset=opts["subset"], base_dir=ctx.base_dir)
        prefix = build_few_shot_prefix(train[: opts["num_shots"]])
        limit = SMOKE_QUESTIONS if ctx.smoke else (ctx.limit or opts["num_questions"])
        questions = stable_subsample(test, limit, key=lambda r: r["question"])
        await ctx.client.flush_cache()
        before = server_accept_length(await ctx.client.server_info())

        async def ask(record: dict) -> dict:
            prompt = prefix + QUESTION_TEMPLATE.format(question=record["question"])
            response = await ctx.client.generate(native_request(prompt, opts["max_new_tokens"]))
            meta = response.get("meta_info", {})
            ctx.on_sample(
                {
                    "prompt_sha256": sha256_text(prompt),
                    "completion_tokens": meta.get("completion_tokens"),
                    "spec_verify_ct": meta.get("spec_verify_ct"),
                    "spec_accept_length": meta.get("spec_accept_length"),
                }
            )
            return meta

        metas = await ctx.client.map(ask, questions, progress=f"{SUITE}[{ctx.case_id}]")
        after = server_accept_length(await ctx.client.server_info())
        value, tokens, verifies = accept_length(metas, algorithm)
        return EvalResult(
            SUITE,
            {"accept_length": value},
            len(metas),
            {
                "speculative_algorithm": algorithm,
                "completion_tokens": tokens,
                "spec_verify_ct": verifies,
                "server_avg_accept_length_before": before,
                "server_avg_accept_length_after": after,
                "server_minus_ours": None if after is None else after - value,
                "speculative_num_draft_tokens": ctx.server_info.get("speculative_num_draft_tokens"),
                "max_new_tokens": opts["max_new_tokens"],
            },
        )
