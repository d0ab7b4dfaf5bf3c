"""MMMU: college-level multimodal multiple-choice and open questions, 30 subjects in 6 domains.

Dataset: `MMMU/MMMU` (one config per subject, split `validation`, 900 questions; fields `id`, `question` with
`<image N>` tags, `options` as a Python-literal list string, `answer`, `question_type` multiple-choice/open,
`image_1` … `image_7`, `img_type`, `topic_difficulty`, `subfield`), through `datasets`, or a local directory
holding `<Subject>/validation-*.parquet` in the same schema (the canary VLM's set). Source: Yue et al. 2024,
https://github.com/MMMU-Benchmark/MMMU.
Prompt: lmms-eval's default (`lmms_eval/tasks/mmmu/utils.py` `construct_prompt`): the question, then the options
as "A. …" lines and "Answer with the option's letter from the given choices directly.", or for open questions
"Answer the question using a single word or phrase."; greedy. Every image goes where its `<image N>` tag stands
(`interleaved`, the default), or all images first with the tags left in the text (`images_first`, what
lmms-eval sends most chat models).
(The eval itself follows below the prompt helpers.)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

SUITE = "mmmu"
MULTI_CHOICE_PROMPT = "Answer with the option's letter from the given choices directly."
OPEN_ENDED_PROMPT = "Answer the question using a single word or phrase."
IMAGE_TAG_RE = re.compile(r"<image (\d+)>")
MAX_IMAGES = 7
PROMPT_VARIANTS = ("interleaved", "images_first")


def parse_options(doc: Mapping[str, Any]) -> list[str]:
    """`options` is a Python-literal list in a string on the hub (lmms-eval: "Weirdly, ... a string")."""
    options = doc.get("options") or "[]"
    return list(ast.literal_eval(options)) if isinstance(options, str) else list(options)


def option_letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def construct_prompt(doc: Mapping[str, Any]) -> str:
    """lmms-eval's `construct_prompt` with its default prompts: the text the model sees, `<image N>` tags kept."""
    question = doc["question"]
    if doc["question_type"] == "multiple-choice":
        options = parse_options(doc)
        lines = "\n".join(f"{letter}. {option}" for letter, option in zip(option_letters(len(options)), options))
        return f"{question}\n{lines}\n\n{MULTI_CHOICE_PROMPT}"
    return f"{question}\n\n{OPEN_ENDED_PROMPT}"


def content_parts(doc: Mapping[str, Any], variant: str = "interleaved") -> list[tuple[str, str]]:
    """The user turn as ("text", str) and ("image", "image_N") parts in order.

    interleaved: each `<image N>` tag is replaced by that image, where it stands (a tag that repeats shows the
    image again); images_first: the distinct tagged images in tag-number order, then the whole text (lmms-eval's
    `mmmu_doc_to_visual` order with `interleaved_format: false`)."""
    prompt = construct_prompt(doc)
    if variant == "images_first":
        keys = sorted({f"image_{n}" for n in IMAGE_TAG_RE.findall(prompt)}, key=lambda k: int(k.split("_")[1]))
        return [("image", k) for k in keys] + [("text", prompt)]
    if variant != "interleaved":
        raise ValueError(f"unknown MMMU prompt variant {variant!r}; choices: {', '.join(PROMPT_VARIANTS)}")
    parts: list[tuple[str, str]] = []
    position = 0
    for match in IMAGE_TAG_RE.finditer(prompt):
        if match.start() > position:
            parts.append(("text", prompt[position : match.start()]))
        parts.append(("image", f"image_{match.group(1)}"))
        position = match.end()
    if position < len(prompt):
        parts.append(("text", prompt[position:]))
    return parts
