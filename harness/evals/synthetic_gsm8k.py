"""Deterministic synthetic word problems in the GSM8K JSONL schema, for the trained canary.

Each problem chains two operations (addition, subtraction, a small multiplication), has a one-line
reasoning and ends in `#### n`, exactly like GSM8K's `answer` field, so the loader and scorers that read
the real data set read this one too.

Held-out rule: a problem is identified by its numeric tuple `(kind, a, b, c)`, not by its text (names and
items are cosmetic). The test split is drawn first; the training stream rejects every tuple the test split
holds, so no test computation is ever trained on, whatever the wording.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

NAMES = (
    "Alice",
    "Bob",
    "Carol",
    "Dave",
    "Eve",
    "Frank",
    "Grace",
    "Henry",
    "Ivy",
    "Jack",
    "Kate",
    "Liam",
    "Mia",
    "Noah",
    "Olivia",
    "Paul",
    "Quinn",
    "Rosa",
    "Sam",
    "Tom",
)
ITEMS = (
    "apples",
    "pens",
    "cups",
    "books",
    "stamps",
    "marbles",
    "cards",
    "shells",
    "stickers",
    "coins",
    "eggs",
    "candies",
    "beads",
    "toys",
    "rocks",
    "flowers",
)
CONTAINERS = {"box": "boxes", "bag": "bags", "crate": "crates", "pack": "packs", "jar": "jars"}

# kind -> (question template, reasoning template); {x} is the intermediate result, {n} the answer.
# The reasoning is terse on purpose: every token costs CPU training time, and only the numbers carry the task.
TEMPLATES = {
    "add_sub": (
        "{name} has {a} {item}. {name} buys {b} more and gives away {c}. How many {item} does {name} have now?",
        "{a} + {b} = {x}, and {x} - {c} = {n}.",
    ),
    "sub_add": (
        "{name} has {a} {item}. {name} gives away {b} and then gets {c} more. How many {item} does {name} have now?",
        "{a} - {b} = {x}, and {x} + {c} = {n}.",
    ),
    "mul_add": (
        "Each {box} holds {a} {item}. {name} has {b} {boxes} and {c} loose {item}. How many {item} does {name} have?",
        "{b} * {a} = {x}, and {x} + {c} = {n}.",
    ),
    "mul_sub": (
        "Each {box} holds {a} {item}. {name} buys {b} {boxes} and gives away {c} {item}. How many {item} are left?",
        "{b} * {a} = {x}, and {x} - {c} = {n}.",
    ),
}
KINDS = tuple(TEMPLATES)

GSM8K_TEST_SIZE = 1319  # the real GSM8K test split's size
GSM8K_TRAIN_SIZE = 7473  # the real GSM8K train split's size
ANSWER_RE = re.compile(r"#### (\-?[0-9\.\,]+)")


@dataclass(frozen=True)
class Problem:
    kind: str
    a: int
    b: int
    c: int
    name: str
    item: str
    box: str

    @property
    def key(self) -> tuple[str, int, int, int]:
        """The numeric identity used for the held-out rule."""
        return (self.kind, self.a, self.b, self.c)

    @property
    def steps(self) -> tuple[int, int]:
        """(intermediate, final) results of the two operations."""
        a, b, c = self.a, self.b, self.c
        x = {"add_sub": a + b, "sub_add": a - b, "mul_add": a * b, "mul_sub": a * b}[self.kind]
        n = x - c if self.kind in ("add_sub", "mul_sub") else x + c
        return x, n

    @property
    def result(self) -> int:
        return self.steps[1]

    def to_gsm8k(self) -> dict[str, str]:
        """The GSM8K JSONL record: question, and answer = one-line reasoning + '\\n#### n'."""
        question, reasoning = TEMPLATES[self.kind]
        x, n = self.steps
        fields = {"a": self.a, "b": self.b, "c": self.c, "x": x, "n": n, "name": self.name, "item": self.item}
        fields.update(box=self.box, boxes=CONTAINERS[self.box])
        return {"question": question.format(**fields), "answer": f"{reasoning.format(**fields)}\n#### {n}"}


def draw_problem(rng: random.Random) -> Problem:
    """One random problem; every given number is 1-99 and no intermediate or answer is negative."""
    kind = rng.choice(KINDS)
    if kind == "add_sub":
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        c = rng.randint(1, min(99, a + b))
    elif kind == "sub_add":
        a = rng.randint(2, 99)
        b, c = rng.randint(1, a), rng.randint(1, 99)
    else:  # a small multiplication: a per container, b containers
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        c = rng.randint(1, 99) if kind == "mul_add" else rng.randint(1, min(99, a * b))
    return Problem(kind, a, b, c, rng.choice(NAMES), rng.choice(ITEMS), rng.choice(sorted(CONTAINERS)))


def _rng(seed: int, split: str) -> random.Random:
    # Integer seeds: random.Random(str) would also be stable, but ints make the derivation obvious.
    return random.Random(seed * 1000 + {"test": 1, "train": 2}[split])


def make_test_split(seed: int = 0, n: int = GSM8K_TEST_SIZE) -> list[Problem]:
    """The held-out split: `n` problems with distinct numeric tuples."""
    rng, seen, out = _rng(seed, "test"), set(), []
    while len(out) < n:
        p = draw_problem(rng)
        if p.key not in seen:
            seen.add(p.key)
            out.append(p)
    return out


def train_stream(seed: int = 0, held_out: Iterable[Problem] = ()) -> Iterator[Problem]:
    """An endless stream of training problems, never one whose numeric tuple is held out.

    Repeats are allowed (the multiplication kinds have only ~10k tuples each); test tuples are not.
    """
    excluded = {p.key for p in held_out}
    rng = _rng(seed, "train")
    while True:
        p = draw_problem(rng)
        if p.key not in excluded:
            yield p


def make_train_split(seed: int = 0, held_out: Iterable[Problem] = (), n: int = GSM8K_TRAIN_SIZE) -> list[Problem]:
    """The train split file's problems: the first `n` distinct tuples of the training stream."""
    seen, out = set(), []
    for p in train_stream(seed, held_out):
        if p.key not in seen:
            seen.add(p.key)
            out.append(p)
            if len(out) == n:
                return out
    raise AssertionError("unreachable: the stream is endless")


def extract_answer(text: str) -> int | None:
    """GSM8K's strict extraction: the number after the first '#### ', commas removed."""
    m = ANSWER_RE.search(text)
    if not m:
        return None
    try:
        return int(m.group(1).replace(",", "").rstrip("."))
    except ValueError:
        return None


def write_jsonl(records: Iterable[dict], path: str | Path) -> Path:
    """One compact JSON object per line, keys in schema order, '\\n' line ends (byte-stable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
