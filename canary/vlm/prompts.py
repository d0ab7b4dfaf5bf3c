"""From a canary `Question` to exactly what the MMMU eval sends, and to what the model is trained to answer.

The user turn comes from `harness.evals.mmmu.content_parts` (lmms-eval's `construct_prompt`, images where their
`<image N>` tags stand, or all images first), rendered through the processor's chat template with the generation
prompt; the target is the option's letter (or the open answer) followed by `<|im_end|>`. The processor is the one
`hf_engine.processor.load_processor` returns, so training sees the ids and pixels the HF engine will.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from canary.vlm.draw import blank_like
from canary.vlm.mmmu_set import question_doc
from canary.vlm.tasks import Question
from harness.evals.mmmu import content_parts

EOS_TEXT = "<|im_end|>"


@dataclass(frozen=True)
class Prompt:
    text: str  # the chat-templated prompt, one <|image_pad|> per image (the processor expands them)
    images: list  # PIL images in the order their parts appear (an image shown twice appears twice)


def doc_prompt(processor, doc: Mapping, variant: str = "interleaved", blank: bool = False) -> Prompt:
    """The prompt of an MMMU row: its parts from the MMMU eval's own helper, `image_N` from the row (or, blanked,
    a grey image of the same size in its place)."""
    content, images = [], []
    for kind, value in content_parts(doc, variant):
        if kind == "text":
            content.append({"type": "text", "text": value})
        else:
            content.append({"type": "image"})
            images.append(blank_like(doc[value]) if blank else doc[value])
    messages = [{"role": "user", "content": content}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return Prompt(text, images)


def question_prompt(processor, question: Question, variant: str = "interleaved") -> Prompt:
    """A generated question's prompt, through the same MMMU row it would have in the held-out set."""
    return doc_prompt(processor, question_doc(question, "train"), variant)


def video_prompt(processor, doc: Mapping, frames: list) -> Prompt:
    """What the Video-MME eval sends in frames mode: every frame as an image part, then its text (lmms-eval's
    prompt, harness.evals.video_mme.question_text)."""
    from harness.evals.video_mme import question_text

    content = [{"type": "image"} for _ in frames] + [{"type": "text", "text": question_text(doc)}]
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    return Prompt(text, list(frames))


def target_text(question) -> str:
    return question.answer + EOS_TEXT


def encode_prompt(processor, prompt: Prompt) -> dict:
    """One prompt through the processor: input_ids, mm_token_type_ids (1-D lists), pixel_values, image_grid_thw."""
    out = processor(text=[prompt.text], images=prompt.images or None, return_tensors="pt")
    encoded = {"input_ids": out["input_ids"][0].tolist(), "mm_token_type_ids": out["mm_token_type_ids"][0].tolist()}
    if prompt.images:
        encoded["pixel_values"] = out["pixel_values"]
        encoded["image_grid_thw"] = out["image_grid_thw"]
    return encoded
