"""What the VLM canary trains on, step by step: a retrieval drill first, then every task family.

Choosing the option that matches what an image shows needs a two-hop circuit (find the matching option, copy the
letter in front of it). The tiny model finds it only after a long plateau, measured here on text-only drills in
the MMMU format ("Which option is blue?\\nA. red\\nB. blue\\n\\nAnswer with the option's letter ..."), batch 16:
letter accuracy sat at the prior (about 0.35) for 2000 steps, then rose to 0.73 at 2600 and 0.90 at 3800. Image
questions alone never got there in the budget (colour-only multiple choice: chance after 1500 steps, while its open
form, naming the colour, was right 24/24 after 200). Drill steps have no image, so they are about twice as fast.

So the run has two phases:
    drill   (the first `drill_steps`): text-only drills, plus `drill_vision_fraction` open image questions so
            the vision tower learns colours, shapes, counts and sides meanwhile;
    tasks   every family, open at `open_fraction` where it has an open form, the images-first prompt at
            `images_first_fraction`, and drills at `text_match_fraction` so the lookup is kept.
Drills never enter the held-out set (they have no image); image questions whose key is held out are skipped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from harness.canary.vlm.draw import COLOURS, SHAPE_KINDS
from harness.canary.vlm.tasks import COUNT_OPTIONS, OPEN_FAMILIES, POSITIONS, Question, ask, draw_question

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
            variant = "images_first" if rng.random() < config.images_first_fraction else "interleaved"
            if question.key() not in held_out:
                yield question, variant


def batches(config, held_out: set) -> Iterator[list[Row]]:
    """`config.steps` batches of `config.batch_size` rows: drill-phase batches, then task-phase batches."""
    drill, tasks = drill_stream(config, held_out), task_stream(config, held_out)
    for step in range(config.steps):
        stream = drill if step < config.drill_steps else tasks
        yield [next(stream) for _ in range(config.batch_size)]
