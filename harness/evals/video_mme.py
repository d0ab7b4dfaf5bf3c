"""Video-MME: multiple-choice questions on videos (short, medium and long), three per video.

Dataset: `lmms-lab/Video-MME` (split `test`, 2,700 questions on 900 videos; fields `video_id`, `duration`
short/medium/long, `domain`, `sub_category`, `url`, `videoID`, `question_id`, `task_type`, `question`, `options`
["A. …", …], `answer` the letter), through `datasets`, or a local directory with `videomme/<split>-*.parquet` (or
`<split>-*.parquet`) in that schema. Videos are `<video_dir>/<videoID>.mp4` (default: `<local dir>/data`, or for a
hub id `$HF_HOME/videomme/data`, where lmms-eval unpacks them); subtitles `<video_dir>/../subtitle/<videoID>.srt`.
Source: Fu et al. 2024, https://video-mme.github.io.
Prompt: lmms-eval's (`lmms_eval/tasks/videomme/utils.py`): "Select the best answer to the following
multiple-choice question based on the video. Respond with only the letter (A, B, C, or D) of the correct
option." (with subtitles: "... based on the video and the subtitles. ...", after "This video's subtitles are
listed below:" and the subtitle lines of the sampled frames), the question, the option lines, "The best answer
is:". Visual parts first, then the text, greedy, `max_new_tokens` 16.
Delivery (`mode`): `frames` decodes the video here (harness.evals.video, OpenCV) and sends the sampled frames as
`image_url` parts (lmms-eval's and TensorRT-LLM's way); `video_url` sends one `video_url` part (a data URL, or
the file's path with `video_url_form: path`) and the server decodes and samples. Mode, sampling rule, frame
count, max pixels and the request timeout are in every report.
Answer extraction: lmms-eval's `extract_characters_regex`: strip the answer prefixes, "" (wrong) when a reply
of over 10 words has no option letter, else the first letter A-D. Differences: its prefix list runs two pairs
together by a missing comma ("The best option isThe correct option is"); here all five are separate. An empty
extraction is scored wrong and counted (`unparsed_rate`).
Metrics: `accuracy` (higher is better; gated), per duration, domain and task type in details, with the standard
error clustered by `videoID` (three questions share a video, so they are not independent).
Assumes: every video of the chosen questions exists (a missing one is an error naming the file, before any
request).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, unknown_choice
from harness.evals.data import sha256_text, stable_subsample
from harness.evals.mmmu import image_url
from harness.evals.types import EvalContext, EvalResult, check_options
from harness.evals.video import Sampling, read_frames, video_data_url

SUITE = "video_mme"
MODES = ("frames", "video_url")
VIDEO_URL_FORMS = ("data", "path")
OPTION_PROMPT = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
OPTION_PROMPT_SUBTITLES = (
    "Select the best answer to the following multiple-choice question based on the video and "
    "the subtitles. Respond with only the letter (A, B, C, or D) of the correct option."
)
SUBTITLES_INTRO = "This video's subtitles are listed below: \n"
NO_SUBTITLES = "No subtitles available"
POST_PROMPT = "The best answer is:"
ANSWER_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
)
SMOKE_SAMPLES = 6
OPTIONS = {
    "source": "lmms-lab/Video-MME",
    "split": "test",
    "video_dir": None,
    "mode": "frames",
    "video_url_form": "data",
    "sampling": "uniform",
    "num_frames": 8,
    "fps": 1.0,
    "max_pixels": None,
    "subtitles": False,
    "max_new_tokens": 16,
    "limit": None,
}
BREAKDOWN_FIELDS = ("duration", "domain", "task_type")


def extract_answer(reply: str) -> str:
    """The option letter in `reply`, or "" (lmms-eval's `extract_characters_regex`; see the module docstring)."""
    text = reply.strip()
    for prefix in ANSWER_PREFIXES:
        text = text.replace(prefix, "")
    if len(text.split()) > 10 and not re.search("[ABCD]", text):
        return ""
    match = re.search(r"[ABCD]", text)
    return match[0] if match else ""


def question_text(doc: Mapping[str, Any], subtitle_lines: Sequence[str] | None = None) -> str:
    """The text part of the prompt; `subtitle_lines` None = the no-subtitle prompt, [] = none available."""
    body = doc["question"] + "\n" + "\n".join(doc["options"])
    if subtitle_lines is None:
        return OPTION_PROMPT + "\n" + body + "\n" + POST_PROMPT
    subtitles = "\n".join(subtitle_lines) if subtitle_lines else NO_SUBTITLES
    return SUBTITLES_INTRO + subtitles + "\n" + OPTION_PROMPT_SUBTITLES + "\n" + body + "\n" + POST_PROMPT


SRT_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)")
FONT_TEXT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """(start s, end s, text) of each cue; Video-MME wraps cue text in <font>, which is taken off when there."""
    cues = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line.strip()]
        if len(lines) < 3 or "-->" not in lines[1]:
            continue
        times = [SRT_TIME.search(part) for part in lines[1].split("-->")]
        if not all(times):
            continue
        start, end = (
            int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in (t.groups() for t in times)
        )
        body = " ".join(lines[2:])
        font = FONT_TEXT.findall(body)
        cues.append((start, end, font[0] if font else body))
    return cues


def subtitles_at(cues, frame_indices: Sequence[int], fps: float) -> list[str]:
    """The cues showing at any sampled frame, in time order (lmms-eval's frame_num path)."""
    times = [i / fps for i in frame_indices] if fps else []
    return [text for start, end, text in cues if any(start <= t < end for t in times)]


def load_questions(source: str, split: str, base_dir: str = ".") -> list[dict]:
    import datasets

    local = Path(source) if Path(source).is_absolute() else Path(base_dir, source)
    if not local.is_dir():
        return [dict(row) for row in datasets.load_dataset(source, split=split)]
    files = sorted((local / "videomme").glob(f"{split}-*.parquet")) or sorted(local.glob(f"{split}-*.parquet"))
    if not files:
        raise ConfigError(f"{local}: no videomme/{split}-*.parquet or {split}-*.parquet")
    return [
        dict(row) for row in datasets.load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split)
    ]


def video_root(opts: Mapping[str, Any], base_dir: str) -> Path:
    if opts["video_dir"]:
        root = Path(opts["video_dir"])
        return root if root.is_absolute() else Path(base_dir, root)
    local = Path(opts["source"]) if Path(opts["source"]).is_absolute() else Path(base_dir, opts["source"])
    if local.is_dir():
        return local / "data"
    import os

    return Path(os.path.expanduser(os.environ.get("HF_HOME", "~/.cache/huggingface")), "videomme", "data")


def video_path(root: Path, video_id: str) -> Path | None:
    """The file lmms-eval would open: .mp4, else .MP4, else .mkv."""
    for suffix in (".mp4", ".MP4", ".mkv"):
        if (root / f"{video_id}{suffix}").is_file():
            return root / f"{video_id}{suffix}"
    return None


def check_videos(docs: Sequence[Mapping[str, Any]], root: Path) -> dict[str, Path]:
    """videoID -> file, or one ConfigError naming every missing file (before any request is sent)."""
    found, missing = {}, []
    for video_id in sorted({d["videoID"] for d in docs}):
        path = video_path(root, video_id)
        (missing.append(str(root / f"{video_id}.mp4")) if path is None else found.__setitem__(video_id, path))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(f"video_mme: {len(missing)} video file(s) missing: {shown} (video_mme.video_dir: {root})")
    return found


def breakdown(samples: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    groups: dict[str, dict[str, list[Mapping]]] = {f: defaultdict(list) for f in BREAKDOWN_FIELDS}
    for s in samples:
        for f in BREAKDOWN_FIELDS:
            groups[f][s[f]].append(s)
    return {
        f: {
            name: {
                "n": len(rows),
                "accuracy": sum(r["correct"] for r in rows) / len(rows),
                "stderr": clustered_standard_error([r["correct"] for r in rows], [r["videoID"] for r in rows]),
            }
            for name, rows in sorted(by.items())
        }
        for f, by in groups.items()
    }


def delivery(opts: Mapping[str, Any]) -> dict[str, Any]:
    """What the report records about how videos reached the server."""
    record = {"mode": opts["mode"], "subtitles": bool(opts["subtitles"])}
    if opts["mode"] == "frames":
        return {
            **record,
            "sampling": Sampling(opts["sampling"], opts["num_frames"], opts["fps"], opts["max_pixels"]).record(),
        }
    return {
        **record,
        "video_url_form": opts["video_url_form"],
        "sampling": "by the server (its video processor's defaults)",
    }


class VideoAsker:
    """Builds one question's request in the chosen mode and scores the reply."""

    def __init__(self, opts: Mapping[str, Any], videos: Mapping[str, Path], model: str):
        if opts["mode"] not in MODES:
            raise unknown_choice("video_mme mode", opts["mode"], MODES, where="video_mme.mode")
        if opts["video_url_form"] not in VIDEO_URL_FORMS:
            raise unknown_choice(
                "video_mme video_url_form", opts["video_url_form"], VIDEO_URL_FORMS, where="video_mme.video_url_form"
            )
        self.opts, self.videos, self.model = opts, videos, model
        self.sampling = Sampling(opts["sampling"], opts["num_frames"], opts["fps"], opts["max_pixels"])

    def request(self, doc: Mapping[str, Any]) -> tuple[list[dict], dict]:
        """(content parts, what was sent: frame numbers and pixel digest, or the video form)."""
        path = self.videos[doc["videoID"]]
        subtitle_lines, sent = None, {}
        if self.opts["mode"] == "frames":
            frames = read_frames(path, self.sampling)
            parts = [{"type": "image_url", "image_url": {"url": image_url(im)}} for im in frames.images]
            sent = {
                "frame_indices": frames.indices,
                "total_frames": frames.total,
                "frames_sha256": frames.digest()[:16],
            }
            indices, fps = frames.indices, frames.fps
        else:
            url = video_data_url(path) if self.opts["video_url_form"] == "data" else str(path.resolve())
            parts = [{"type": "video_url", "video_url": {"url": url}}]
            indices, fps = [], 0.0
        if self.opts["subtitles"]:
            srt = path.parent.parent / "subtitle" / f"{doc['videoID']}.srt"
            cues = parse_srt(srt.read_text(encoding="utf-8")) if srt.is_file() else []
            subtitle_lines = subtitles_at(cues, indices, fps) if indices else [c[2] for c in cues]
        parts.append({"type": "text", "text": question_text(doc, subtitle_lines)})
        return parts, sent

    async def ask(self, client, doc: Mapping[str, Any]) -> dict[str, Any]:
        import asyncio

        parts, sent = await asyncio.to_thread(self.request, doc)  # decoding must not stall the other requests
        response = await client.chat(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": parts}],
                "max_tokens": self.opts["max_new_tokens"],
                "temperature": 0,
            }
        )
        output = response["choices"][0]["message"]["content"] or ""
        predicted = extract_answer(output)
        return {
            "question_id": doc["question_id"],
            "videoID": doc["videoID"],
            **{f: doc[f] for f in BREAKDOWN_FIELDS},
            "answer": doc["answer"],
            "output": output,
            "parsed": predicted or None,
            "unparsed": not predicted,
            "correct": predicted.lower() == str(doc["answer"]).lower(),
            "prompt_sha256": sha256_text(parts[-1]["text"]),
            **sent,
        }


def select_questions(ctx: EvalContext, opts: Mapping[str, Any]) -> tuple[list[dict], dict[str, Path]]:
    docs = load_questions(opts["source"], opts["split"], ctx.base_dir)
    limit = SMOKE_SAMPLES if ctx.smoke else (ctx.limit or opts["limit"])
    docs = stable_subsample(docs, limit, key=lambda d: str(d["question_id"]))
    return docs, check_videos(docs, video_root(opts, ctx.base_dir))


def summary(samples: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], dict[str, Any]]:
    n = len(samples)
    correct = [s["correct"] for s in samples]
    metrics = {"accuracy": sum(correct) / n, "unparsed_rate": sum(s["unparsed"] for s in samples) / n}
    details = {
        "stderr_clustered": clustered_standard_error(correct, [s["videoID"] for s in samples]),
        "videos": len({s["videoID"] for s in samples}),
        **breakdown(samples),
        "per_sample_correct": {s["question_id"]: bool(s["correct"]) for s in samples},
    }
    return metrics, details


class VideoMME:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        docs, videos = select_questions(ctx, opts)
        asker = VideoAsker(opts, videos, ctx.model_path)

        async def one(doc: dict) -> dict:
            sample = await asker.ask(ctx.client, doc)
            ctx.on_sample(sample)
            return sample

        samples = await ctx.client.map(one, docs, progress=f"{SUITE}[{ctx.case_id}]")
        metrics, details = summary(samples)
        details = {
            **delivery(opts),
            "max_new_tokens": opts["max_new_tokens"],
            "request_timeout_s": ctx.client.options.timeout_s,
            **details,
        }
        return EvalResult(suite=SUITE, n=len(samples), metrics=metrics, details=details)


def clustered_standard_error(scores: Sequence[float], clusters: Sequence[Any]) -> float:
    """Standard error of the mean of `scores` when units sharing a cluster (Video-MME's three questions per video)
    are correlated: the cluster-robust (sandwich) estimate sqrt(G/(G-1) * sum_g (sum_i (x_i - mean))^2) / n over
    G clusters, as lmms-eval's clustered stderr. With one unit per cluster it is the usual sample SE; 0 for one
    cluster (no spread is observable)."""
    if len(scores) != len(clusters):
        raise ValueError(f"{len(scores)} scores but {len(clusters)} cluster labels")
    n = len(scores)
    if n < 1:
        raise ValueError(f"n must be a positive sample count, got {n}")
    mean = sum(scores) / n
    sums: dict[Any, float] = {}
    for score, cluster in zip(scores, clusters):
        sums[cluster] = sums.get(cluster, 0.0) + (score - mean)
    g = len(sums)
    if g < 2:
        return 0.0
    return math.sqrt(g / (g - 1) * sum(s * s for s in sums.values())) / n
