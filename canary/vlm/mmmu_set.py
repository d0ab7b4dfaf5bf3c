"""The canary's held-out questions as MMMU validation: 30 subject configs x 30 questions, the hub's schema.

`MMMU/MMMU` fields: id (`validation_<Subject>_<n>`), question (with `<image N>` tags), options (a Python-literal
list in a string, "[]" for open questions), explanation, image_1 ... image_7 (datasets `Image()`, None when
unused), img_type, answer (the letter, or the open answer), topic_difficulty, question_type, subfield. Written
with `datasets` so the Image feature metadata is in each parquet file:
`<root>/<Subject>/validation-00000-of-00001.parquet`, loadable with
`load_dataset("parquet", data_files={"validation": ".../Art/validation-*.parquet"}, split="validation")`.

Subjects are only labels: each draws 27 multiple-choice questions from two of the canary's task families and 3 open
ones from a family with an open form (10 % open overall); `subfield` names the task family, so scores can be split
by family.
"""

from __future__ import annotations

import random
from pathlib import Path

from canary.vlm.draw import png_bytes
from canary.vlm.tasks import CANARY_FAMILIES, OPEN_FAMILIES, Question, generate_questions

SUBJECTS = (
    "Accounting",
    "Agriculture",
    "Architecture_and_Engineering",
    "Art",
    "Art_Theory",
    "Basic_Medical_Science",
    "Biology",
    "Chemistry",
    "Clinical_Medicine",
    "Computer_Science",
    "Design",
    "Diagnostics_and_Laboratory_Medicine",
    "Economics",
    "Electronics",
    "Energy_and_Power",
    "Finance",
    "Geography",
    "History",
    "Literature",
    "Manage",
    "Marketing",
    "Materials",
    "Math",
    "Mechanical_Engineering",
    "Music",
    "Pharmacy",
    "Physics",
    "Psychology",
    "Public_Health",
    "Sociology",
)
QUESTIONS_PER_SUBJECT = 30
OPEN_PER_SUBJECT = 3
MAX_IMAGES = 7
PARQUET_NAME = "validation-00000-of-00001.parquet"
SUBFIELDS = {
    "colour": "Colour of a shape",
    "shape": "Kind of shape",
    "count": "Counting shapes",
    "position": "Position of a shape",
    "size": "Comparing sizes",
    "which_image": "Choosing an image",
    "same_colour": "Comparing two images",
}
FAMILY_OF_SUBFIELD = {subfield: family for family, subfield in SUBFIELDS.items()}
DIFFICULTY = {
    "colour": "Easy",
    "shape": "Easy",
    "position": "Medium",
    "size": "Medium",
    "same_colour": "Medium",
    "count": "Hard",
    "which_image": "Hard",
}
COLUMNS = (
    "id",
    "question",
    "options",
    "explanation",
    *(f"image_{i}" for i in range(1, MAX_IMAGES + 1)),
    "img_type",
    "answer",
    "topic_difficulty",
    "question_type",
    "subfield",
)


def subject_families(index: int) -> tuple[str, str, str]:
    """(first MC family, second MC family, open family) of the subject at `index`; every family is used."""
    families = CANARY_FAMILIES
    open_families = [f for f in OPEN_FAMILIES if f in families]
    offset = max(1, len(families) // 2)
    return (
        families[index % len(families)],
        families[(index + offset) % len(families)],
        open_families[index % len(open_families)],
    )


def subject_questions(subject: str, seed: int) -> list[Question]:
    """The subject's 30 questions in their (seeded, shuffled) order."""
    index = SUBJECTS.index(subject)
    first, second, open_family = subject_families(index)
    subject_seed = seed * 1000 + 100 + index  # the training streams are seeded by strings, never by these
    mc_first = QUESTIONS_PER_SUBJECT - OPEN_PER_SUBJECT - (QUESTIONS_PER_SUBJECT - OPEN_PER_SUBJECT) // 2
    questions = (
        generate_questions(first, mc_first, subject_seed)
        + generate_questions(second, QUESTIONS_PER_SUBJECT - OPEN_PER_SUBJECT - mc_first, subject_seed + 50)
        + generate_questions(open_family, OPEN_PER_SUBJECT, subject_seed + 70, open_fraction=1.0)
    )
    random.Random(f"mmmu-order/{seed}/{subject}").shuffle(questions)
    return questions


def held_out_questions(seed: int) -> dict[str, list[Question]]:
    return {subject: subject_questions(subject, seed) for subject in SUBJECTS}


def question_doc(question: Question, doc_id: str) -> dict:
    """The MMMU row of `question`: images as PIL images, unused image slots None."""
    images = question.images()
    doc = {
        "id": doc_id,
        "question": question.question,
        "options": str(list(question.options)),
        "explanation": "",
        "img_type": "['Geometric Shapes']",
        "answer": question.answer,
        "topic_difficulty": DIFFICULTY.get(question.family, "Easy"),  # .get: training-only drills are in no subject
        "question_type": question.question_type,
        "subfield": SUBFIELDS.get(question.family, question.family),
    }
    for i in range(1, MAX_IMAGES + 1):
        doc[f"image_{i}"] = images[i - 1] if i <= len(images) else None
    return {column: doc[column] for column in COLUMNS}


def subject_docs(subject: str, questions: list[Question]) -> list[dict]:
    return [question_doc(q, f"validation_{subject}_{n}") for n, q in enumerate(questions, start=1)]


def features():
    from datasets import Features, Image, Value

    return Features({c: Image() if c.startswith("image_") else Value("string") for c in COLUMNS})


def write_subject(docs: list[dict], path: Path) -> None:
    """One subject's parquet; images stored as deterministic PNG bytes."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()  # one bar per subject file floods the build log
    columns = {c: [d[c] for d in docs] for c in COLUMNS}
    for c in COLUMNS:
        if c.startswith("image_"):
            columns[c] = [None if im is None else {"bytes": png_bytes(im), "path": None} for im in columns[c]]
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(columns, features=features()).to_parquet(str(path))


def write_mmmu_set(root: Path, held_out: dict[str, list[Question]]) -> list[Path]:
    paths = []
    for subject, questions in held_out.items():
        path = Path(root) / subject / PARQUET_NAME
        write_subject(subject_docs(subject, questions), path)
        paths.append(path)
    return paths


def load_subject(root: Path, subject: str):
    """The subject's rows as the MMMU eval loads a local directory (datasets' parquet builder, PIL images)."""
    from datasets import disable_progress_bars, load_dataset

    disable_progress_bars()
    files = {"validation": str(Path(root) / subject / "validation-*.parquet")}
    return load_dataset("parquet", data_files=files, split="validation")
