"""Video-MME mode agreement: the same questions on the same server, frames decoded here versus `video_url`.

A server-side decoding or sampling regression (a decoder that drops frames, a changed default fps, a resize that
moves colours) can leave the Video-MME total almost where it was; asked both ways, question by question, it shows.
Dataset and prompt: the Video-MME eval's (`source`, `split`, `video_dir`, `sampling`, `num_frames`, `fps`,
`max_pixels`, `video_url_form`, `subtitles`, `max_new_tokens`, `limit`; video_mme.py); `mode` is not an option here:
every question is asked in `frames` mode and in `video_url` mode.
Metrics:
- `answer_agreement` (higher is better): share of questions whose extracted letters are the same in both modes
  (two empty extractions agree only when the replies are the same text);
- `accuracy_gap` (0 expected): accuracy with `video_url` − accuracy with frames, per question (−1, 0, 1), by the
  exact two-sided McNemar test (harness.verdict.statistics); `accuracy` (video_url) and `reference_accuracy` (frames,
  the client-side reference) recorded.
The first disagreeing questions go into the report's notes, with the frame numbers the client sent.
Assumes: the server decodes `video_url` parts (SGLang: torchcodec, decord or the kit's stand-in); the two modes
need not sample the same frames, so agreement below 1 can be legitimate: the threshold says how far.
"""

from __future__ import annotations

from harness.evals.paired import paired_result, same_answer
from harness.evals.types import EvalContext, EvalResult, check_options
from harness.evals.video_mme import OPTIONS as VIDEO_OPTIONS
from harness.evals.video_mme import VideoAsker, delivery, select_questions

SUITE = "video_mme_modes"
OPTIONS = {key: value for key, value in VIDEO_OPTIONS.items() if key != "mode"}


def disagreement_line(frames: dict, video: dict) -> str:
    return (
        f"{frames['question_id']} ({frames['videoID']}): gold {frames['answer']!r}; frames "
        f"{frames.get('frame_indices')} {frames['output']!r} → {frames['parsed']!r}; video_url {video['output']!r} "
        f"→ {video['parsed']!r}"
    )


class VideoMMEModes:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**VIDEO_OPTIONS, **ctx.options}
        docs, videos = select_questions(ctx, opts)
        by_frames = VideoAsker({**opts, "mode": "frames"}, videos, ctx.model_path)
        by_url = VideoAsker({**opts, "mode": "video_url"}, videos, ctx.model_path)

        async def both(doc: dict) -> tuple[dict, dict]:
            frames, video = await by_frames.ask(ctx.client, doc), await by_url.ask(ctx.client, doc)
            ctx.on_sample(
                {
                    "question_id": doc["question_id"],
                    "videoID": doc["videoID"],
                    "answer": doc["answer"],
                    "frames_output": frames["output"],
                    "frames_parsed": frames["parsed"],
                    "frame_indices": frames.get("frame_indices"),
                    "video_url_output": video["output"],
                    "video_url_parsed": video["parsed"],
                    "agree": same_answer(frames, video),
                }
            )
            return frames, video

        pairs = await ctx.client.map(both, docs, progress=f"{SUITE}[{ctx.case_id}]")
        details = {
            "frames": delivery({**opts, "mode": "frames"}),
            "video_url": delivery({**opts, "mode": "video_url"}),
            "max_new_tokens": opts["max_new_tokens"],
            "request_timeout_s": ctx.client.options.timeout_s,
        }
        # under test: the server's own decoding (video_url); reference: the frames decoded here
        return paired_result(
            SUITE,
            ctx.case_id,
            [(video, frames) for frames, video in pairs],
            same_answer,
            lambda video, frames: disagreement_line(frames, video),
            details,
        )
