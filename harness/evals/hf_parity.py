"""HF parity: the "compare with HF" step of adding a model, automated.

Dataset: GSM8K-format questions (the same `source` options as the gsm8k eval; the canary's local JSONL in CI).
Compared: the server under test against the HF reference engine serving the same weights (CPU fp32 by
default, started beside the server under test).
Metrics (lower is better unless noted):
- `prompt_logprob_max_diff` / `prompt_logprob_mean_diff`: |Δ logprob| over every prompt token;
- `output_logprob_max_diff` / `output_logprob_mean_diff`: the greedy continuation of the server under test,
  re-scored by the reference (teacher forcing), so the tokens compared are the same even where the two
  greedy paths part;
- `greedy_agreement` (higher is better): share of prompts whose greedy output ids are identical;
- `gsm8k_agreement` (higher is better): share of questions whose extracted answers agree.
Assumes: both engines use the same tokenizer ids (prompts are sent as `input_ids`) and return SGLang's
`(logprob, token_id, text)` triples; position 0 has no logprob and is skipped.
"""

from __future__ import annotations

import math

from harness.evals.data import load_records, stable_subsample
from harness.evals.gsm8k import QUESTION_TEMPLATE, STOP_STRINGS, extract_flexible
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "hf_parity"
OPTIONS = {
    "source": "openai/gsm8k",
    "subset": "main",
    "split": "test",
    "num_prompts": 32,
    "max_new_tokens": 32,
    "gsm8k_questions": 64,
    "gsm8k_max_new_tokens": 256,
}
SMOKE_SAMPLES = 4


def logprob_values(entries: list) -> list[float | None]:
    """The logprob of each `(logprob, token_id, text)` entry (None where the engine gives none)."""
    return [entry[0] for entry in entries]


def compare_logprobs(test: list[float | None], ref: list[float | None]) -> list[float]:
    """|test − ref| per position where both are numbers; raises when the lengths differ."""
    if len(test) != len(ref):
        raise ValueError(f"logprob lists differ in length: {len(test)} vs {len(ref)}")
    return [abs(a - b) for a, b in zip(test, ref) if a is not None and b is not None]


def worst(diffs_by_sample: dict[str, list[float]]) -> tuple[float, str | None, int | None]:
    """The largest gap, with the sample id and token index where it sits."""
    best = (0.0, None, None)
    for sample_id, diffs in diffs_by_sample.items():
        for index, value in enumerate(diffs):
            if value > best[0] or math.isnan(value):
                best = (value, sample_id, index)
    return best


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class HFParity:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        if ctx.reference is None:
            raise ValueError(f"{SUITE}[{ctx.case_id}]: no reference engine available to compare with")
        reference = ctx.reference()
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(ctx.tokenizer_path or ctx.model_path)
        records = load_records(opts["source"], opts["split"], subset=opts["subset"], base_dir=ctx.base_dir)
        count = SMOKE_SAMPLES if ctx.smoke else opts["num_prompts"]
        prompts = stable_subsample(records, count, key=lambda r: r["question"])
        sampling = {"max_new_tokens": opts["max_new_tokens"], "temperature": 0}

        async def logprob_pass(record: dict) -> dict:
            ids = tokenizer(QUESTION_TEMPLATE.format(question=record["question"]), add_special_tokens=False)[
                "input_ids"
            ]
            request = {"input_ids": ids, "sampling_params": sampling, "return_logprob": True, "logprob_start_len": 0}
            test = await ctx.client.generate(request)
            ref = await reference.generate(request)
            out_ids = [entry[1] for entry in test["meta_info"]["output_token_logprobs"]]
            rescored = await reference.generate(
                {
                    "input_ids": ids + out_ids,
                    "sampling_params": {"max_new_tokens": 0},
                    "return_logprob": True,
                    "logprob_start_len": 0,
                }
            )
            ref_out = logprob_values(rescored["meta_info"]["input_token_logprobs"])[len(ids) :]
            sample = {
                "id": record.get("id", record["question"][:40]),
                "prompt_diffs": compare_logprobs(
                    logprob_values(test["meta_info"]["input_token_logprobs"]),
                    logprob_values(ref["meta_info"]["input_token_logprobs"]),
                ),
                "output_diffs": compare_logprobs(logprob_values(test["meta_info"]["output_token_logprobs"]), ref_out),
                "same_greedy": out_ids == [entry[1] for entry in ref["meta_info"]["output_token_logprobs"]],
                "test_text": test["text"],
                "ref_text": ref["text"],
            }
            ctx.on_sample({"kind": "logprobs", **sample})
            return sample

        questions = stable_subsample(
            records, SMOKE_SAMPLES if ctx.smoke else opts["gsm8k_questions"], key=lambda r: r["question"]
        )

        async def answer_pass(record: dict) -> dict:
            request = {
                "text": QUESTION_TEMPLATE.format(question=record["question"]),
                "sampling_params": {
                    "max_new_tokens": opts["gsm8k_max_new_tokens"],
                    "temperature": 0,
                    "stop": STOP_STRINGS,
                },
            }
            test, ref = await ctx.client.generate(request), await reference.generate(request)
            sample = {
                "id": record.get("id", record["question"][:40]),
                "test_answer": extract_flexible(test["text"]),
                "ref_answer": extract_flexible(ref["text"]),
            }
            sample["agree"] = sample["test_answer"] == sample["ref_answer"]
            ctx.on_sample({"kind": "gsm8k", **sample})
            return sample

        logprob_samples = await ctx.client.map(logprob_pass, prompts, progress=f"{SUITE}[{ctx.case_id}]")
        answer_samples = await ctx.client.map(answer_pass, questions, progress=f"{SUITE}-gsm8k[{ctx.case_id}]")
        prompt_diffs = {s["id"]: s["prompt_diffs"] for s in logprob_samples}
        output_diffs = {s["id"]: s["output_diffs"] for s in logprob_samples}
        all_prompt = [d for ds in prompt_diffs.values() for d in ds]
        all_output = [d for ds in output_diffs.values() for d in ds]
        worst_prompt, worst_output = worst(prompt_diffs), worst(output_diffs)
        return EvalResult(
            suite=SUITE,
            n=len(logprob_samples),
            metrics={
                "prompt_logprob_max_diff": worst_prompt[0],
                "prompt_logprob_mean_diff": _mean(all_prompt),
                "output_logprob_max_diff": worst_output[0],
                "output_logprob_mean_diff": _mean(all_output),
                "greedy_agreement": sum(s["same_greedy"] for s in logprob_samples) / len(logprob_samples),
                "gsm8k_agreement": sum(s["agree"] for s in answer_samples) / len(answer_samples),
            },
            details={
                "worst_prompt_token": {"sample": worst_prompt[1], "index": worst_prompt[2]},
                "worst_output_token": {"sample": worst_output[1], "index": worst_output[2]},
                "prompt_tokens_compared": len(all_prompt),
                "output_tokens_compared": len(all_output),
                "gsm8k_questions": len(answer_samples),
            },
        )
