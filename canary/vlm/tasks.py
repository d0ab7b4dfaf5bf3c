"""Task families of the VLM canary: questions whose answer is only in the pixels.

Each family turns a seeded `random.Random` into a `Question`: the MMMU-style question text with `<image N>` tags,
its options (shuffled; empty for an open question), the answer (the option's letter, or the word/number) and the
scenes of its images. `generate_questions(family, n, seed)` is the pure entry point the build and tests use.

Families (the colours, shapes and positions come from `draw`; CANARY_FAMILIES are the ones the canary uses):
    colour       the colour of the one shape                         MC 2-5 options, or open
    shape        the kind of the one shape                           MC 2-4 options, or open
    count        how many shapes (1-4)                               MC 2-5 options, or open
    position     which side the shape sits on (left/right/top/bottom)  MC 2-4 options, or open
    size         the colour of the bigger of two shapes               MC 2-4 options
    which_image  which of 2-3 images (the options are images) shows X  MC, 2 or 3 images
    same_colour  whether two images show shapes of the same colour     MC yes/no, 2 images
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from canary.vlm.draw import COLOURS, IMAGE_SIZE, SHAPE_KINDS, Scene, Shape, render

POSITIONS = ("left", "right", "top", "bottom")
MAX_COUNT = 4
COUNT_OPTIONS = tuple(str(n) for n in range(1, MAX_COUNT + 2))


@dataclass(frozen=True)
class Question:
    family: str
    question: str  # with <image N> tags where the images go
    options: tuple[str, ...]  # () for an open question
    answer: str  # the option's letter, or the open answer
    scenes: tuple[Scene, ...]  # image_1, image_2, ... in order

    @property
    def question_type(self) -> str:
        return "multiple-choice" if self.options else "open"

    def images(self, size: int = IMAGE_SIZE) -> list:
        return [render(scene, size) for scene in self.scenes]

    def key(self) -> tuple:
        """What makes two examples the same: the text and the exact drawings (they render deterministically)."""
        return (self.question, self.options, self.scenes)


def letter(index: int) -> str:
    return chr(ord("A") + index)


def ask(rng: random.Random, family: str, question: str, correct: str, pool, scenes, open_question: bool, most: int):
    """The question as open (answer = `correct`) or MC with 2..`most` shuffled options drawn from `pool`."""
    if open_question:
        return Question(family, question, (), correct, tuple(scenes))
    n_options = rng.randint(2, min(most, len(pool)))
    options = [correct] + rng.sample([p for p in pool if p != correct], n_options - 1)
    rng.shuffle(options)
    return Question(family, question, tuple(options), letter(options.index(correct)), tuple(scenes))


def random_shape(rng: random.Random, radius: tuple[int, int], colour: str | None = None) -> Shape:
    r = rng.randint(*radius)
    return Shape(
        kind=rng.choice(SHAPE_KINDS),
        colour=colour or rng.choice(list(COLOURS)),
        cx=rng.randint(r + 2, IMAGE_SIZE - r - 3),
        cy=rng.randint(r + 2, IMAGE_SIZE - r - 3),
        radius=r,
    )


def scatter(rng: random.Random, n: int, radius: tuple[int, int], colours=None) -> Scene:
    """`n` shapes that do not touch (rejection sampling; the sizes leave plenty of room)."""
    while True:
        shapes: list[Shape] = []
        for i in range(n):
            for _ in range(100):
                shape = random_shape(rng, radius, colours[i] if colours else None)
                if not any(shape.overlaps(s) for s in shapes):
                    shapes.append(shape)
                    break
        if len(shapes) == n:
            return tuple(shapes)


def colour_question(rng: random.Random, open_question: bool) -> Question:
    shape = random_shape(rng, (14, 26))
    text = "What colour is the shape in <image 1>?"
    return ask(rng, "colour", text, shape.colour, list(COLOURS), [(shape,)], open_question, 5)


def shape_question(rng: random.Random, open_question: bool) -> Question:
    shape = random_shape(rng, (16, 26))
    text = "Which shape is shown in <image 1>?"
    return ask(rng, "shape", text, shape.kind, SHAPE_KINDS, [(shape,)], open_question, 4)


def count_question(rng: random.Random, open_question: bool) -> Question:
    n = rng.randint(1, MAX_COUNT)
    scene = scatter(rng, n, (7, 10))
    text = "How many shapes are there in <image 1>?"
    return ask(rng, "count", text, str(n), COUNT_OPTIONS, [scene], open_question, 5)


def position_question(rng: random.Random, open_question: bool) -> Question:
    side = rng.choice(POSITIONS)
    r = rng.randint(9, 13)
    near = (r + 2, IMAGE_SIZE // 3 - 2)  # the centre lies in the outer third on that side
    far = (IMAGE_SIZE - IMAGE_SIZE // 3 + 2, IMAGE_SIZE - r - 3)
    middle = (IMAGE_SIZE // 2 - 10, IMAGE_SIZE // 2 + 10)
    along = {"left": near, "right": far, "top": middle, "bottom": middle}[side]
    across = {"left": middle, "right": middle, "top": near, "bottom": far}[side]
    shape = Shape(rng.choice(SHAPE_KINDS), rng.choice(list(COLOURS)), rng.randint(*along), rng.randint(*across), r)
    text = "Where is the shape in <image 1>?"
    return ask(rng, "position", text, side, POSITIONS, [(shape,)], open_question, 4)


def size_question(rng: random.Random, open_question: bool) -> Question:
    big_colour, small_colour = rng.sample(list(COLOURS), 2)
    while True:
        big, small = random_shape(rng, (17, 22), big_colour), random_shape(rng, (6, 9), small_colour)
        if not big.overlaps(small):
            break
    scene = (big, small) if rng.random() < 0.5 else (small, big)
    text = "Which colour is the bigger shape in <image 1>?"
    distractors = rng.sample([c for c in COLOURS if c not in (big_colour, small_colour)], rng.randint(0, 2))
    options = [big_colour, small_colour] + distractors
    rng.shuffle(options)
    return Question("size", text, tuple(options), letter(options.index(big_colour)), (scene,))


def which_image_question(rng: random.Random, open_question: bool) -> Question:
    n_images = rng.randint(2, 3)
    colours = rng.sample(list(COLOURS), n_images)
    scenes = [(random_shape(rng, (14, 24), c),) for c in colours]
    target = rng.randrange(n_images)
    order = list(range(n_images))
    rng.shuffle(order)  # option i shows image order[i]
    options = tuple(f"<image {i + 1}>" for i in order)
    text = f"Which image shows a {colours[target]} shape?"
    return Question("which_image", text, options, letter(order.index(target)), tuple(scenes))


def same_colour_question(rng: random.Random, open_question: bool) -> Question:
    first = random_shape(rng, (14, 24))
    same = rng.random() < 0.5
    other = first.colour if same else rng.choice([c for c in COLOURS if c != first.colour])
    second = random_shape(rng, (14, 24), other)
    text = "Do the shapes in <image 1> and <image 2> have the same colour?"
    options = ["yes", "no"] if rng.random() < 0.5 else ["no", "yes"]
    return Question(
        "same_colour", text, tuple(options), letter(options.index("yes" if same else "no")), ((first,), (second,))
    )


FAMILIES = {
    "colour": colour_question,
    "shape": shape_question,
    "count": count_question,
    "position": position_question,
    "size": size_question,
    "which_image": which_image_question,
    "same_colour": same_colour_question,
}
OPEN_FAMILIES = ("colour", "shape", "count", "position")  # the rest are multiple choice only
# What the committed canary is trained and evaluated on. shape, count and position are defined and tested but left
# out: in the 10-minute CPU budget the tiny vision tower did not learn them (their open forms alone: 0.6 after 1500
# steps; in the full seven-family mix their multiple choice stayed at chance, 0.33, after 3000 steps, and taking
# position along broke the run for the others too), while these four reached 1.0 (canary.vlm.curriculum).
CANARY_FAMILIES = ("colour", "size", "which_image", "same_colour")


def draw_question(rng: random.Random, family: str, open_question: bool = False) -> Question:
    if family not in FAMILIES:
        from harness.errors import unknown_choice

        raise unknown_choice("VLM canary task family", family, FAMILIES)
    return FAMILIES[family](rng, open_question and family in OPEN_FAMILIES)


def generate_questions(family: str, n: int, seed: int, open_fraction: float = 0.0) -> list[Question]:
    """`n` questions of `family`, the same for the same arguments; each is open with probability `open_fraction`
    (families outside OPEN_FAMILIES are always multiple choice)."""
    rng = random.Random(f"{family}/{seed}")
    return [draw_question(rng, family, rng.random() < open_fraction) for _ in range(n)]
