"""MMMU parity: the server under test and the HF reference engine answer the same MMMU questions on the same weights.

SGLang asks every new VLM for an MMMU score next to the HF Transformers score of the same model; this eval does
both in one run and compares them question by question instead of only the two totals.
Dataset: the MMMU eval's (`source`, `split`, `subjects`, `prompt_variant`, `max_new_tokens`, `limit`; mmmu.py),
asked through both engines' `/v1/chat/completions`, greedy.
Metrics:
- `answer_agreement` (higher is better): share of questions whose parsed answers are the same (two unreadable
  answers count as the same only when their texts are);
- `accuracy_gap` (0 expected): accuracy under test − accuracy on the reference, judged per question (−1, 0, 1)
  by the sign-flip test, which for such units is the exact two-sided McNemar test (harness.verdict.statistics); the
  verdict prints the discordant counts through its interval and p-value;
- `accuracy` and `reference_accuracy`, recorded.
The first disagreeing questions (id, both outputs, the gold answer) go into the report's notes.
Assumes: the reference engine serves the same checkpoint and chat template; greedy decoding on both.
"""

from __future__ import annotations

from harness.evals.mmmu import OPTIONS, ask, select_questions
from harness.evals.paired import paired_result, same_answer
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "mmmu_parity"


def disagreement_line(test: dict, ref: dict) -> str:
    return (
        f"{test['id']}: gold {test['answer']!r}; under test {test['output']!r} → {test['parsed']!r} "
        f"({'right' if test['correct'] else 'wrong'}); reference {ref['output']!r} → {ref['parsed']!r} "
        f"({'right' if ref['correct'] else 'wrong'})"
    )


class MMMUParity:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        if ctx.reference is None:
            raise ValueError(f"{SUITE}[{ctx.case_id}]: no reference engine available to compare with")
        reference = ctx.reference()
        docs = select_questions(ctx, opts)

        async def both(doc: dict) -> tuple[dict, dict]:
            test = await ask(ctx.client, doc, opts, ctx.model_path)
            ref = await ask(reference, doc, opts, ctx.model_path)
            ctx.on_sample(
                {
                    "id": doc["id"],
                    "answer": doc["answer"],
                    "test_output": test["output"],
                    "test_parsed": test["parsed"],
                    "test_correct": test["correct"],
                    "ref_output": ref["output"],
                    "ref_parsed": ref["parsed"],
                    "ref_correct": ref["correct"],
                    "agree": same_answer(test, ref),
                }
            )
            return test, ref

        pairs = await ctx.client.map(both, docs, progress=f"{SUITE}[{ctx.case_id}]")
        return paired_result(
            SUITE, ctx.case_id, pairs, same_answer, disagreement_line, {"prompt_variant": opts["prompt_variant"]}
        )
