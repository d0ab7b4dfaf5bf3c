"""Greedy accuracy of the VLM canary on its questions, as the MMMU eval will score it, with and without the pixels.

Prompts go through the same processor as in training, batched with left padding (transformers `generate`, greedy,
special tokens dropped). Scoring: multiple choice is right when the reply, stripped, is exactly the answer letter;
open questions when the normalised reply (case, surrounding spaces and a final full stop ignored; numbers compared
as numbers) equals the answer. The blanked run replaces every image by a uniform grey one of the same size: what
the model still gets right there it got from the text alone, so it should sit near chance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from canary.vlm.draw import COLOURS, SHAPE_KINDS
from canary.vlm.mmmu_set import FAMILY_OF_SUBFIELD
from canary.vlm.prompts import Prompt, doc_prompt
from canary.vlm.tasks import COUNT_OPTIONS, POSITIONS
from harness.evals.mmmu import parse_options

MAX_NEW_TOKENS = 8  # the longest answer ("triangle") is 7 tokens of this vocabulary, then <|im_end|>


def normalise_open(text: str) -> str:
    text = text.strip().lower().rstrip(".").strip()
    try:
        return repr(float(text))
    except ValueError:
        return text


OPEN_ANSWERS = {"colour": COLOURS, "shape": SHAPE_KINDS, "count": COUNT_OPTIONS[:-1], "position": POSITIONS}


def family_of(doc: Mapping) -> str:
    return FAMILY_OF_SUBFIELD.get(doc["subfield"], doc["subfield"])


def is_correct(reply: str, doc: Mapping) -> bool:
    if doc["question_type"] == "multiple-choice":
        return reply.strip() == doc["answer"]
    return normalise_open(reply) == normalise_open(doc["answer"])


def chance(doc: Mapping) -> float:
    """The expected score of a blind guess among the options (open questions: among the family's answers)."""
    if doc["question_type"] == "multiple-choice":
        return 1 / len(parse_options(doc))
    return 1 / len(OPEN_ANSWERS[family_of(doc)])


def generate(model, processor, prompts: Sequence[Prompt], batch_size: int = 32) -> list[str]:
    """Greedy replies in the order of `prompts`, batched by prompt length with left padding."""
    import torch

    lengths = [len(processor.tokenizer(p.text, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    replies = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        texts = [prompts[i].text for i in idx]
        images = [image for i in idx for image in prompts[i].images]
        inputs = processor(text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                pad_token_id=processor.tokenizer.pad_token_id,
                eos_token_id=model.generation_config.eos_token_id,
            )
        width = inputs["input_ids"].shape[1]
        for i, text in zip(idx, processor.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)):
            replies[i] = text
    return replies


@dataclass
class Score:
    correct: int = 0
    n: int = 0
    chance_sum: float = 0.0
    by_family: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, doc: Mapping, right: bool) -> None:
        self.correct += right
        self.n += 1
        self.chance_sum += chance(doc)
        self.by_family[family_of(doc)][0] += right
        self.by_family[family_of(doc)][1] += 1

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    def record(self) -> dict:
        families = {
            f: {"accuracy": round(c / n, 4), "correct": c, "n": n} for f, (c, n) in sorted(self.by_family.items())
        }
        return {
            "accuracy": round(self.accuracy, 4),
            "correct": self.correct,
            "n": self.n,
            "chance": round(self.chance_sum / self.n, 4),
            "by_family": families,
        }


def evaluate(
    model, processor, docs: Sequence[Mapping], variant: str = "interleaved", blank: bool = False, batch_size: int = 32
) -> tuple[Score, list[str]]:
    """Score and replies on MMMU rows in one prompt variant, with their images or with grey ones."""
    prompts = [doc_prompt(processor, doc, variant, blank) for doc in docs]
    replies = generate(model, processor, prompts, batch_size)
    score = Score()
    for doc, reply in zip(docs, replies):
        score.add(doc, is_correct(reply, doc))
    return score, replies


def evaluate_video(model, processor, root, control: str = "", batch_size: int = 16) -> dict:
    """Accuracy on the Video-MME-schema set under `root` as the eval sends it in frames mode (8 frames, uniform,
    decoded from the mp4 files with harness.evals.video), scored with its letter extraction. `control`:
    "first_frame_repeated" sends the first sampled frame 8 times, "reversed" the frames in reverse order."""
    from pathlib import Path

    from canary.vlm.prompts import video_prompt
    from canary.vlm.videomme_set import NUM_FRAMES
    from harness.evals.video import Sampling, read_frames
    from harness.evals.video_mme import extract_answer, load_questions, video_path

    docs = load_questions(str(root), "test")
    prompts = []
    for doc in docs:
        frames = read_frames(video_path(Path(root) / "data", doc["videoID"]), Sampling("uniform", NUM_FRAMES)).images
        if control == "first_frame_repeated":
            frames = [frames[0]] * len(frames)
        elif control == "reversed":
            frames = frames[::-1]
        prompts.append(video_prompt(processor, doc, frames))
    replies = generate(model, processor, prompts, batch_size)
    by_task: dict = defaultdict(lambda: [0, 0])
    correct = 0
    for doc, reply in zip(docs, replies):
        right = extract_answer(reply) == doc["answer"]
        correct += right
        by_task[doc["task_type"]][0] += right
        by_task[doc["task_type"]][1] += 1
    chance = sum(1 / len(doc["options"]) for doc in docs) / len(docs)
    return {
        "accuracy": round(correct / len(docs), 4),
        "correct": correct,
        "n": len(docs),
        "chance": round(chance, 4),
        "by_task_type": {
            t: {"accuracy": round(c / n, 4), "correct": c, "n": n} for t, (c, n) in sorted(by_task.items())
        },
    }
