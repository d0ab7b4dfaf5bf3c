"""What the VLM canary trains on, step by step: a retrieval drill first, then the task families.

Choosing the option that matches what an image shows needs a two-hop circuit (find the matching option, copy the
letter in front of it). With the answer loss alone the tiny model found it only after a long plateau, measured on
text-only drills in the MMMU format ("Which option is blue?\nA. red\nB. blue\n\nAnswer with the option's letter
..."), batch 16: letter accuracy sat at the prior (about 0.35) for 2000 steps, then rose to 0.73 at 2600 and 0.90 at
3800; image questions alone never got there in the budget (colour-only multiple choice: chance after 1500 steps,
while its open form, naming the colour, was right 24/24 after 200). The attention hints (`hints`) cut that plateau:
with them the drill was at 0.5-0.8 after 500 steps and colour multiple choice at 24/24 after 800.

So the run has two phases:
    drill   (the first `drill_steps`): text-only drills, plus `drill_vision_fraction` open image questions so
            the vision tower learns colours meanwhile;
    tasks   every canary family, open at `open_fraction` where it has an open form, the images-first prompt at
            `images_first_fraction` (per family: `images_first_by_family`), and drills at `text_match_fraction`
            so the lookup is kept.
Measured with these phases (3000 steps, 24 held-out questions per family): every family 1.0 from step 2500 on, in
two runs with different streams. The outcome is sensitive to the run, though: on the 900 held-out questions the
committed 2600-step schedule scores 0.98, the same seed with 3000 steps (a slower cosine) 0.94, and a run that also
trained the position family stayed near chance everywhere. Drills never enter the held-out set (they have no
image); image questions whose key is held out are skipped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace

from canary.vlm.draw import COLOURS, SHAPE_KINDS
from canary.vlm.tasks import COUNT_OPTIONS, OPEN_FAMILIES, POSITIONS, Question, ask, draw_question
from canary.vlm.videomme_set import training_example

# Every word an option of the task families can be, grouped so a drill's options are of one kind.
OPTION_WORDS = (tuple(COLOURS), SHAPE_KINDS, COUNT_OPTIONS, POSITIONS, ("yes", "no"))
Row = tuple[Question, str]  # a question and its prompt variant


def text_match_question(rng: random.Random) -> Question:
    """A text-only multiple-choice question whose answer is named in the question (the retrieval drill)."""
    words = rng.choice(OPTION_WORDS)
    word = rng.choice(words)
    return ask(rng, "text_match", f"Which option is {word}?", word, words, [], False, 5)


def drill_stream(config, held_out: set) -> Iterator[Row]:
    """Phase 1 rows: drills, and open image questions at `config.drill_vision_fraction`."""
    rng = random.Random(f"vlm-drill/{config.seed}")
    families = [f for f in OPEN_FAMILIES if f in config.families]
    while True:
        if families and rng.random() < config.drill_vision_fraction:
            question = draw_question(rng, rng.choice(families), open_question=True)
            if question.key() not in held_out:
                yield question, "interleaved"
        else:
            yield text_match_question(rng), "interleaved"


def task_stream(config, held_out: set) -> Iterator[Row]:
    """Phase 2 rows: families in turn of a seeded shuffle, each row preceded by a drill at `text_match_fraction`."""
    rng = random.Random(f"vlm-train/{config.seed}")
    families = list(config.families)
    while True:
        rng.shuffle(families)
        for family in families:
            if rng.random() < config.text_match_fraction:
                yield text_match_question(rng), "interleaved"
            question = draw_question(rng, family, rng.random() < config.open_fraction)
            share = dict(config.images_first_by_family).get(family, config.images_first_fraction)
            variant = "images_first" if rng.random() < share else "interleaved"
            if question.key() not in held_out:
                yield question, variant


def video_stream(config, held_out: set) -> Iterator[Row]:
    """Video-MME rows on 8 frames (canary.vlm.videomme_set), none of the held-out ones."""
    rng = random.Random(f"vlm-video-train/{config.seed}")
    while True:
        example = training_example(rng)
        if example.key() not in held_out:
            yield example, "frames"


def batches(config, held_out: set) -> Iterator[list[Row]]:
    """`config.steps` batches of `config.batch_size` rows: drill-phase batches, then task-phase batches, of which
    a share `video_fraction` are all video rows. (Video rows are about 3x as long: mixed into image batches they
    padded every row to their length, and the task phase ran at 1.5 instead of 5 steps/s.)"""
    drill, tasks, videos = drill_stream(config, held_out), task_stream(config, held_out), video_stream(config, held_out)
    choose = random.Random(f"vlm-batches/{config.seed}")
    for step in range(config.steps):
        if step >= config.drill_steps and choose.random() < config.video_fraction:
            yield [next(videos) for _ in range(config.video_batch_size)]
        else:
            yield [next(drill if step < config.drill_steps else tasks) for _ in range(config.batch_size)]


def video_stage_batches(config, held_out: set) -> Iterator[list[Row]]:
    """The video stage's `config.video_stage_steps` batches: all video rows (`video_batch_size` of them) at
    `video_stage_fraction`, else a task-phase batch of image rows, so the image families are kept."""
    tasks = task_stream(replace(config, seed=config.seed + 1), held_out)  # a new stream: not stage 1's rows again
    videos = video_stream(config, held_out)
    choose = random.Random(f"vlm-video-stage/{config.seed}")
    for _ in range(config.video_stage_steps):
        if choose.random() < config.video_stage_fraction:
            yield [next(videos) for _ in range(config.video_batch_size)]
        else:
            yield [next(tasks) for _ in range(config.batch_size)]
