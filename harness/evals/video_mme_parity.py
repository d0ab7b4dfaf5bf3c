"""Video-MME parity: the server under test and the HF reference engine answer the same Video-MME questions.

As `mmmu_parity` for images: both engines serve the same weights and get the same requests, question by question.
Dataset, prompt and delivery: the Video-MME eval's options (video_mme.py); the HF reference engine decodes no
video itself, so `mode` must be `frames` (the same decoded frames go to both).
Metrics: `answer_agreement` (higher is better: same extracted letter; two empty extractions agree only when the
replies are the same text), `accuracy_gap` (under test − reference per question, exact two-sided McNemar),
`accuracy` and `reference_accuracy` recorded. The first disagreeing questions go into the report's notes.
Assumes: greedy decoding on both; the reference engine serves the same checkpoint and chat template.
"""

from __future__ import annotations

from harness.errors import ConfigError
from harness.evals.paired import paired_result, same_answer
from harness.evals.types import EvalContext, EvalResult, check_options
from harness.evals.video_mme import OPTIONS, VideoAsker, delivery, select_questions

SUITE = "video_mme_parity"


def disagreement_line(test: dict, ref: dict) -> str:
    return (
        f"{test['question_id']} ({test['videoID']}): gold {test['answer']!r}; under test {test['output']!r} → "
        f"{test['parsed']!r}; reference {ref['output']!r} → {ref['parsed']!r}"
    )


class VideoMMEParity:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        if opts["mode"] != "frames":
            raise ConfigError(
                f"{SUITE}.mode: {opts['mode']!r}; the HF reference engine takes frames only (mode: frames)"
            )
        if ctx.reference is None:
            raise ValueError(f"{SUITE}[{ctx.case_id}]: no reference engine available to compare with")
        reference = ctx.reference()
        docs, videos = select_questions(ctx, opts)
        asker = VideoAsker(opts, videos, ctx.model_path)

        async def both(doc: dict) -> tuple[dict, dict]:
            test, ref = await asker.ask(ctx.client, doc), await asker.ask(reference, doc)
            ctx.on_sample(
                {
                    "question_id": doc["question_id"],
                    "videoID": doc["videoID"],
                    "answer": doc["answer"],
                    "test_output": test["output"],
                    "test_parsed": test["parsed"],
                    "ref_output": ref["output"],
                    "ref_parsed": ref["parsed"],
                    "frame_indices": test.get("frame_indices"),
                    "agree": same_answer(test, ref),
                }
            )
            return test, ref

        pairs = await ctx.client.map(both, docs, progress=f"{SUITE}[{ctx.case_id}]")
        return paired_result(
            SUITE,
            ctx.case_id,
            pairs,
            same_answer,
            disagreement_line,
            {**delivery(opts), "max_new_tokens": opts["max_new_tokens"]},
        )
