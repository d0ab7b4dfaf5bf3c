"""mm_prefix_cache: the prefix cache of a VLM server keys images by content and position, and serves the right state.

No anchor has this suite. SGLang pads each image's tokens with a value derived from the image's hash, so its
radix tree tells images apart; a cache keyed by text alone would serve one image's KV for another.
Dataset: the first image and the question text of MMMU-format questions (the MMMU eval's `source`, `split`,
`subjects`), each text tagged with its question id so no two samples share a prefix past the chat header.
Requests: native `/generate` with `text` (the tokenizer's chat template over an image part and a text part) and
`image_data` (PNG data URLs); cache hits are read from `meta_info.cached_tokens` (SGLang's OpenAI `usage` reports
0 for multimodal hits unless the server runs with `--enable-cache-report`, so the native field is used).
Per sample, with the cache on:
 (a) warm the prompt (image, then text), then send it again greedy: the hit must reuse past the image, and its
     output logprobs must equal a cold run's: `kl_div` (k3) and `hit_shift` (the signed per-sample gap to the cold
     run minus a second cold run's, judged by the sign-flip test), over the greedy tokens both runs share;
 (b) the same text with a different image (the image flipped and inverted): `cached_tokens` must not reach past
     the tokens before the image placeholder;
 (c) the same image after the text instead of before it: no hit past the two prompts' common token prefix.
Metrics: `kl_div`, `hit_shift` (0 expected), `hit_rate`, `false_hits` (count of (b) and (c) violations, 0
expected; the first ones are printed).
Cold runs use `logprob_start_len=0`, which bypasses the prefix cache on SGLang and the HF engine (they must
report 0 cached tokens). Assumes the image placeholder string is `image_token` (Qwen-VL's by default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from harness.evals.cache_control import mean_gap
from harness.evals.logprob_common import (
    CacheCheckFailed,
    Prompt,
    cached_tokens_of,
    gate_hit_rate,
    output_logprobs,
    radix_disabled_reason,
    summarize_kl,
    tokenizer_for,
)
from harness.evals.mmmu import image_url, load_questions
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "mm_prefix_cache"
OPTIONS = {
    "source": "MMMU/MMMU",
    "split": "validation",
    "subjects": None,
    "num_samples": 16,
    "max_new_tokens": 16,
    "image_token": "<|image_pad|>",
    "min_hit_rate": 0.5,
}
SMOKE_SAMPLES = 4
SHOWN_FALSE_HITS = 5


def prompt_text(tokenizer, text: str, image_first: bool) -> str:
    parts = [{"type": "image"}, {"type": "text", "text": text}]
    messages = [{"role": "user", "content": parts if image_first else parts[::-1]}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def tokens_before_image(tokenizer, text: str, image_token: str) -> list[int]:
    """The ids before the first image placeholder: what any other image may share with this prompt."""
    head, found, _ = text.partition(image_token)
    if not found:
        raise CacheCheckFailed(
            f"{SUITE}: the chat template rendered no {image_token!r} for an image part; set "
            f"the suite's image_token option to this model's placeholder"
        )
    return list(tokenizer.encode(head, add_special_tokens=False))


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def other_image(image):
    """A different image of the same size: flipped and colour-inverted."""
    from PIL import ImageOps

    return ImageOps.invert(ImageOps.flip(image.convert("RGB")))


def shared_greedy(*runs: Sequence[int]) -> int:
    """How many leading output tokens all runs generated alike (logprobs compare only there)."""
    return min(common_prefix(runs[0], r) for r in runs[1:]) if len(runs) > 1 else len(runs[0])


def prepare_case(tokenizer, doc: Mapping, image_token: str) -> dict:
    """One sample's prompts (image first; image after the text) and the ids each has before its image. The text
    is tagged with the question id: MMMU repeats question wordings, and two samples sharing a text would share
    cache legitimately."""
    text = f"[{doc['id']}] {doc['question']}"
    first, after = prompt_text(tokenizer, text, True), prompt_text(tokenizer, text, False)
    return {
        "id": str(doc["id"]),
        "image": doc["image_1"],
        "first": first,
        "after": after,
        "before_first": tokens_before_image(tokenizer, first, image_token),
        "before_after": tokens_before_image(tokenizer, after, image_token),
    }


def moved_image_bounds(cases: Sequence[dict]) -> dict[str, int]:
    """For each sample's image-after-text prompt, the most ids it may legitimately find cached: its longest
    common prefix, before any image, with any other prompt of the run (all run concurrently, so any may be
    cached first). Past that point only the same image at the same place could match, and there is none."""
    others = [(c["id"], "first", c["before_first"]) for c in cases] + [
        (c["id"], "after", c["before_after"]) for c in cases
    ]
    return {
        c["id"]: max(
            common_prefix(c["before_after"], ids) for owner, kind, ids in others if (owner, kind) != (c["id"], "after")
        )
        for c in cases
    }


class MMPrefixCache:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        reason = radix_disabled_reason(ctx.server_info)
        if reason:
            return EvalResult(SUITE, {}, 0, skipped=reason)
        tokenizer = tokenizer_for(ctx)
        docs = [
            d for d in load_questions(opts["source"], opts["split"], opts["subjects"], ctx.base_dir) if d.get("image_1")
        ]
        docs = docs[: SMOKE_SAMPLES if ctx.smoke else (ctx.limit or opts["num_samples"])]
        greedy = {"max_new_tokens": opts["max_new_tokens"], "temperature": 0, "ignore_eos": True}

        async def generate(text: str, image, sampling: dict, **extra) -> dict:
            return await ctx.client.generate(
                {"text": text, "image_data": [image_url(image)], "sampling_params": sampling, **extra}
            )

        cases = [prepare_case(tokenizer, doc, opts["image_token"]) for doc in docs]
        moved_bounds = moved_image_bounds(cases)

        async def probe(case: dict) -> dict:
            first, image = case["first"], case["image"]
            prompt = Prompt(case["id"], [])
            await generate(first, image, {"max_new_tokens": 1, "temperature": 0})
            hit = await generate(first, image, greedy, return_logprob=True)
            different = await generate(first, other_image(image), {"max_new_tokens": 1, "temperature": 0})
            moved = await generate(case["after"], image, {"max_new_tokens": 1, "temperature": 0})
            bounds = {
                "different image": len(case["before_first"]),
                "image moved after the text": moved_bounds[case["id"]],
            }
            seen = {"different image": different, "image moved after the text": moved}
            false_hits = [
                f"{case['id']}: {what}: cached_tokens {r['meta_info']['cached_tokens']} > {bounds[what]}, the most "
                "tokens it shares before any image with a prompt sent before it"
                for what, r in seen.items()
                if cached_tokens_of(SUITE, prompt, r, int(r["meta_info"].get("prompt_tokens", 10**9))) > bounds[what]
            ]
            hit_cached = cached_tokens_of(SUITE, prompt, hit, int(hit["meta_info"].get("prompt_tokens", 10**9)))
            return {
                **case,
                "hit": hit,
                "hit_cached": hit_cached,
                "past_image": hit_cached > len(case["before_first"]),
                "false_hits": false_hits,
            }

        await ctx.client.flush_cache()
        probes = await ctx.client.map(probe, cases, progress=f"{SUITE}[{ctx.case_id}] probes")
        hits = [p for p in probes if p["past_image"]]
        gate_hit_rate(
            SUITE,
            len(hits),
            len(probes),
            opts["min_hit_rate"],
            "the repeated prompt reused tokens past its image",
            [p["hit_cached"] for p in probes],
        )
        await ctx.client.flush_cache()

        async def cold_pair(p: dict) -> tuple[dict, dict]:
            runs = []
            for arm in ("cold", "control"):
                r = await generate(p["first"], p["image"], greedy, return_logprob=True, logprob_start_len=0)
                if r["meta_info"].get("cached_tokens"):
                    raise CacheCheckFailed(
                        f"{SUITE}: sample {p['id']}: the {arm} run (logprob_start_len=0) reported "
                        f"cached_tokens={r['meta_info']['cached_tokens']}; it must run cold (0)"
                    )
                runs.append(r)
            return runs[0], runs[1]

        colds = await ctx.client.map(cold_pair, hits, progress=f"{SUITE}[{ctx.case_id}] cold")
        return score(probes, hits, colds)


def score(probes: list[dict], hits: list[dict], colds: list[tuple[dict, dict]]) -> EvalResult:
    pairs, units, compared = [], {}, 0
    for p, (cold, control) in zip(hits, colds):
        runs = [p["hit"], cold, control]
        ids = [list(r["output_ids"]) for r in runs]
        k = shared_greedy(*ids)
        if k == 0:
            continue
        hit_lp, cold_lp, control_lp = (output_logprobs(r, f"{SUITE}: sample {p['id']}")[:k] for r in runs)
        pairs.append((p["id"], cold_lp, hit_lp))
        units[p["id"]] = mean_gap(hit_lp, cold_lp) - mean_gap(control_lp, cold_lp)
        compared += k
    if not pairs:
        raise CacheCheckFailed(f"{SUITE}: no hit shares a first greedy token with its cold run; nothing to compare")
    summary = summarize_kl(pairs)
    false_hits = [line for p in probes for line in p["false_hits"]]
    notes = (
        [f"{SUITE}: {len(false_hits)} false cache hit(s); the first:"]
        + ["  " + f for f in false_hits[:SHOWN_FALSE_HITS]]
        if false_hits
        else []
    )
    return EvalResult(
        SUITE,
        n=len(probes),
        metrics={
            "kl_div": summary.kl_div,
            "hit_shift": math.fsum(units.values()) / len(units),
            "hit_rate": len(hits) / len(probes),
            "false_hits": float(len(false_hits)),
        },
        details={
            "cache_report": "native /generate meta_info.cached_tokens",
            "compared_tokens": compared,
            "worst_token": summary.worst,
            "mean_hit_cached_tokens": sum(p["hit_cached"] for p in hits) / len(hits),
            "false_hit_lines": false_hits[:20],
        },
        units={"hit_shift": list(units.values())},
        notes=notes,
    )
