"""Synthetic videos and questions in Video-MME's schema, whose answers need more than one frame.

Each video is a white 84 px square, `FPS` frames a second; its length sets the Video-MME duration (short 8,
medium 16, long 32 frames: 2, 4 and 8 s). Frame 0 is blank; then one shape shows in a first colour until a
switch point (between a third and two thirds of the way), and from there in a second colour, which is the first
one again in half the videos. Three questions per video, as in Video-MME:
    appears  "Which colour does the shape show at some point in the video?"  (Attribute Perception)
             one of the shown colours among 1-3 never shown: in a video that changes colour, half the frames do
             not show the asked one
    changes  "Does the shape change colour during the video?" yes/no        (Temporal Perception)
    last     "What colour is the shape at the end of the video?"            (Temporal Reasoning)
With only the first frame, repeated, none can be answered: it is blank. With the frames reversed, `last` reads the
blank frame. Options are Video-MME's strings ("A. red"; 2-4 of them); the answer is the letter.

Why `appears` and not "What colour is the shape when it first appears?" (the set until 2026-12-03): the canary
never learned the order of frames (reversed frames scored as high as ordered ones, in four video-stage runs with
and without attention hints on the frames), and without order `first` and `last` are coin flips on the videos
that change colour: 0.83 was the most such a model could score, and it scored 0.84. `last` keeps one question
that needs the order (its frame is the one next to the text).

Files: `<root>/videomme/test-00000-of-00001.parquet` (fields `video_id`, `duration`, `domain`, `sub_category`,
`url`, `videoID`, `question_id`, `task_type`, `question`, `options`, `answer`) and `<root>/data/<videoID>.mp4`
(OpenCV, mp4v), the layout harness.evals.videomme reads.
`python -m canary.vlm.videomme_set --out DIR [--seed 0] [--videos-per-duration 10]`.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

from canary.vlm.draw import COLOURS, IMAGE_SIZE, SHAPE_KINDS, Shape, render

FPS = 4.0
DURATIONS = {"short": 8, "medium": 16, "long": 32}  # frames
DOMAIN, SUB_CATEGORY = "Life Record", "Daily Life"
PARQUET = "videomme/test-00000-of-00001.parquet"
COLUMNS = (
    "video_id",
    "duration",
    "domain",
    "sub_category",
    "url",
    "videoID",
    "question_id",
    "task_type",
    "question",
    "options",
    "answer",
)


@dataclass(frozen=True)
class Video:
    """One video's scenes (one per frame) and its three questions."""

    frames: tuple[tuple[Shape, ...], ...]
    questions: tuple[tuple[str, str, tuple[str, ...], str], ...]  # (family, question, options, answer letter)

    def images(self):
        return [render(scene) for scene in self.frames]


QUESTIONS = {
    "appears": "Which colour does the shape show at some point in the video?",
    "changes": "Does the shape change colour during the video?",
    "last": "What colour is the shape at the end of the video?",
}
TASK_TYPES = {"appears": "Attribute Perception", "changes": "Temporal Perception", "last": "Temporal Reasoning"}


def lettered(rng: random.Random, correct: str, choices: list[str]) -> tuple[tuple[str, ...], str]:
    options = list(choices)
    rng.shuffle(options)
    return tuple(f"{chr(ord('A') + i)}. {text}" for i, text in enumerate(options)), chr(
        ord("A") + options.index(correct)
    )


def make_video(rng: random.Random, n_frames: int) -> Video:
    start_colour = rng.choice(list(COLOURS))
    changed = rng.random() < 0.5
    end_colour = rng.choice([c for c in COLOURS if c != start_colour]) if changed else start_colour
    r = rng.randint(14, 24)
    kind, cx, cy = (
        rng.choice(SHAPE_KINDS),
        rng.randint(r + 2, IMAGE_SIZE - r - 3),
        rng.randint(r + 2, IMAGE_SIZE - r - 3),
    )
    switch = rng.randint(max(2, n_frames // 3), n_frames - n_frames // 3)
    frames = tuple(
        () if i == 0 else (Shape(kind, start_colour if i < switch else end_colour, cx, cy, r),) for i in range(n_frames)
    )
    others = [c for c in COLOURS if c not in (start_colour, end_colour)]
    both = sorted({start_colour, end_colour})
    shown = rng.choice(both)
    questions = [
        ("appears", QUESTIONS["appears"], *lettered(rng, shown, [shown] + rng.sample(others, rng.randint(1, 3)))),
        ("changes", QUESTIONS["changes"], *lettered(rng, "yes" if changed else "no", ["yes", "no"])),
    ]
    choices = both + rng.sample(others, rng.randint(max(0, 2 - len(both)), 4 - len(both)))
    questions.append(("last", QUESTIONS["last"], *lettered(rng, end_colour, choices)))
    return Video(frames, tuple(questions))


def video_set(seed: int, videos_per_duration: int) -> list[tuple[str, str, Video]]:
    """[(videoID, duration, video)] in a fixed order: `videos_per_duration` videos of each duration."""
    rng = random.Random(f"videomme-canary/{seed}")
    return [
        (f"{duration}-{k:03d}", duration, make_video(rng, n_frames))
        for duration, n_frames in DURATIONS.items()
        for k in range(videos_per_duration)
    ]


NUM_FRAMES = 8  # what the canary is trained on and what thresholds.yaml asks for (frames mode, uniform)


@dataclass(frozen=True)
class VideoExample:
    """One question on one video, as the trainer and the builder's evaluation use it."""

    video: Video
    index: int  # which of the video's three questions

    def key(self) -> tuple:
        return ("video", self.video.frames, self.video.questions[self.index])

    @property
    def family(self) -> str:
        return self.video.questions[self.index][0]

    @property
    def answer(self) -> str:
        return self.video.questions[self.index][3]

    def doc(self) -> dict:
        _, question, options, answer = self.video.questions[self.index]
        return {"question": question, "options": list(options), "answer": answer}

    def frames(self, num_frames: int = NUM_FRAMES) -> list:
        """The frames the eval's uniform rule picks, rendered losslessly (the eval decodes them from the mp4)."""
        from harness.evals.video import Sampling, frame_indices

        picks = frame_indices(len(self.video.frames), FPS, Sampling("uniform", num_frames))
        return [render(self.video.frames[i]) for i in picks]


def training_example(rng: random.Random) -> VideoExample:
    """A fresh video of a random duration and one of its questions (the training stream's video rows)."""
    video = make_video(rng, DURATIONS[rng.choice(list(DURATIONS))])
    index = rng.randrange(len(video.questions))
    return VideoExample(video, index)


def held_out_examples(seed: int, videos_per_duration: int = 10) -> list[VideoExample]:
    return [
        VideoExample(video, k)
        for _, _, video in video_set(seed, videos_per_duration)
        for k in range(len(video.questions))
    ]


def write_set(root: Path, seed: int = 0, videos_per_duration: int = 10) -> dict:
    """Write the videos and the parquet; returns counts for a manifest."""
    from datasets import Dataset, Features, Sequence, Value, disable_progress_bars

    from harness.evals.video import write_mp4

    disable_progress_bars()
    root = Path(root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (video_id, duration, video) in enumerate(video_set(seed, videos_per_duration), start=1):
        write_mp4(root / "data" / f"{video_id}.mp4", video.images(), FPS)
        for k, (family, question, options, answer) in enumerate(video.questions, start=1):
            rows.append(
                {
                    "video_id": f"{index:03d}",
                    "duration": duration,
                    "domain": DOMAIN,
                    "sub_category": SUB_CATEGORY,
                    "url": "",
                    "videoID": video_id,
                    "question_id": f"{index:03d}-{k}",
                    "task_type": TASK_TYPES[family],
                    "question": question,
                    "options": list(options),
                    "answer": answer,
                }
            )
    features = Features({c: Sequence(Value("string")) if c == "options" else Value("string") for c in COLUMNS})
    (root / PARQUET).parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict({c: [r[c] for r in rows] for c in COLUMNS}, features=features).to_parquet(str(root / PARQUET))
    return {"questions": len(rows), "videos": len(rows) // 3, "fps": FPS, "frames": DURATIONS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes and questions")
    parser.add_argument("--videos-per-duration", type=int, default=10, help="videos of each duration")
    args = parser.parse_args(argv)
    print(write_set(Path(args.out), args.seed, args.videos_per_duration))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
