"""MMMU: college-level multimodal multiple-choice and open questions, 30 subjects in 6 domains.

Dataset: `MMMU/MMMU` (one config per subject, split `validation`, 900 questions; fields `id`, `question` with
`<image N>` tags, `options` as a Python-literal list string, `answer`, `question_type` multiple-choice/open,
`image_1` … `image_7`, `img_type`, `topic_difficulty`, `subfield`), through `datasets` from the hub id, or a local
directory holding `<Subject>/<split>-*.parquet` in the same schema (the canary VLM's set). Source: Yue et al. 2024,
https://github.com/MMMU-Benchmark/MMMU.
Prompt: lmms-eval's default (`lmms_eval/tasks/mmmu/utils.py` `construct_prompt`): the question, then the options
as "A. …" lines and "Answer with the option's letter from the given choices directly.", or for open questions
"Answer the question using a single word or phrase."; greedy, `max_new_tokens` 16 (lmms-eval 0.7.3's
`mmmu_val.yaml` asks 128; the canary's answers are a letter or a number), through `/v1/chat/completions` with every
image a PNG data URL. `prompt_variant`: each image where its `<image N>` tag stands (`interleaved`, the default),
or the tagged images first with the tags left in the text (`images_first`, the order of older lmms-eval chat
models). lmms-eval 0.7.3's own chat path (`mmmu_doc_to_messages`) differs from both: it strips the text beside each
image and places the images in tag-number order at the tags (the lmms_eval suite's cross-check on the canary VLM:
799 of 900 answers alike, the rest explained by those two differences; tests/test_lmms_eval_suite.py).
Metric: `accuracy` (official MMMU scoring: micro average over questions; per domain and subject in details),
higher is better; `unparsed_rate` (lower is better): answers the parser could not read. Parsers follow the
official `eval_utils.py` (`parse_multi_choice_response`, `parse_open_response`, `eval_open`) with one
difference: where the official parser picks a **random** option for an unreadable answer, this one returns None,
scored wrong and counted, so two runs of the same outputs always score the same.
Assumes: the server answers OpenAI chat with `image_url` parts; a question whose tag names a missing image is a
data error, not a wrong answer.
"""

from __future__ import annotations

import ast
import base64
import io
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, unknown_choice
from harness.evals.data import sha256_text, stable_subsample
from harness.evals.mmmu_answers import open_correct, option_letters, parse_multi_choice, parse_open
from harness.evals.types import EvalContext, EvalResult, check_options

SUITE = "mmmu"
MULTI_CHOICE_PROMPT = "Answer with the option's letter from the given choices directly."
OPEN_ENDED_PROMPT = "Answer the question using a single word or phrase."
IMAGE_TAG_RE = re.compile(r"<image (\d+)>")
MAX_IMAGES = 7
PROMPT_VARIANTS = ("interleaved", "images_first")
SMOKE_SAMPLES = 5
OPTIONS = {
    "source": "MMMU/MMMU",  # hub id, or a local dir of <Subject>/<split>-*.parquet
    "split": "validation",
    "subjects": None,  # None: all 30
    "prompt_variant": "interleaved",
    "max_new_tokens": 16,
    "limit": None,
}
# MMMU's domains and their subjects (the hub's config names), as the official eval groups them.
DOMAINS = {
    "Art and Design": ["Art", "Art_Theory", "Design", "Music"],
    "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
    "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
    "Health and Medicine": [
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ],
    "Humanities and Social Science": ["History", "Literature", "Sociology", "Psychology"],
    "Tech and Engineering": [
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ],
}
SUBJECTS = [subject for subjects in DOMAINS.values() for subject in subjects]
DOMAIN_OF = {subject: domain for domain, subjects in DOMAINS.items() for subject in subjects}


def parse_options(doc: Mapping[str, Any]) -> list[str]:
    """`options` is a Python-literal list in a string on the hub (lmms-eval: "Weirdly, ... a string")."""
    options = doc.get("options") or "[]"
    return list(ast.literal_eval(options)) if isinstance(options, str) else list(options)


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


def score(doc: Mapping[str, Any], output: str) -> dict[str, Any]:
    """parsed (a letter, a candidate list, or None when unreadable) and correct, for one question."""
    if doc["question_type"] == "multiple-choice":
        parsed = parse_multi_choice(output, parse_options(doc))
        return {"parsed": parsed, "unparsed": parsed is None, "correct": parsed is not None and parsed == doc["answer"]}
    if not output.strip():
        return {"parsed": None, "unparsed": True, "correct": False}
    parsed = parse_open(output)
    return {"parsed": parsed, "unparsed": False, "correct": open_correct(doc["answer"], parsed)}


# -- data ------------------------------------------------------------------------------------------------
def subject_of(doc: Mapping[str, Any]) -> str:
    """`validation_Art_Theory_12` → `Art_Theory` (lmms-eval's `extract_subset_name`)."""
    match = re.match(r"^[^_]+_(.+?)_\d+$", str(doc["id"]))
    if not match:
        raise ConfigError(f"mmmu: question id {doc['id']!r} does not read <split>_<Subject>_<n>")
    return match.group(1)


def load_questions(source: str, split: str, subjects: Sequence[str] | None, base_dir: str = ".") -> list[dict]:
    """The questions of `subjects` (default all 30): hub configs through `datasets`, or a local parquet tree."""
    import datasets

    chosen = list(subjects or SUBJECTS)
    for subject in chosen:
        if subject not in DOMAIN_OF:
            raise unknown_choice("MMMU subject", subject, SUBJECTS, where="mmmu.subjects")
    local = Path(source) if Path(source).is_absolute() else Path(base_dir, source)
    if not local.is_dir():
        return [dict(row) for s in chosen for row in datasets.load_dataset(source, s, split=split)]
    files, missing = [], []
    for subject in chosen:
        found = sorted((local / subject).glob(f"{split}-*.parquet"))
        (files.extend(str(f) for f in found)) if found else missing.append(subject)
    if missing:
        present = sorted(p.name for p in local.iterdir() if p.is_dir())
        raise ConfigError(
            f"{local}: no {split}-*.parquet for subject(s) {', '.join(missing)} "
            f"(subjects present: {', '.join(present) or 'none'})"
        )
    return [dict(row) for row in datasets.load_dataset("parquet", data_files={split: files}, split=split)]


def image_url(image) -> str:
    """A PIL image as a PNG data URL (RGB, as lmms-eval converts them)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def chat_messages(doc: Mapping[str, Any], variant: str) -> list[dict]:
    """The user turn with OpenAI `image_url` parts in place of the images."""
    content = []
    for kind, value in content_parts(doc, variant):
        if kind == "text":
            content.append({"type": "text", "text": value})
            continue
        if doc.get(value) is None:
            raise ConfigError(
                f"mmmu: question {doc['id']}: its text names <{value.replace('_', ' ')}> but {value} is empty"
            )
        content.append({"type": "image_url", "image_url": {"url": image_url(doc[value])}})
    return [{"role": "user", "content": content}]


def breakdown(samples: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Accuracy and n per domain and per subject (the official report's rows)."""
    groups: dict[str, dict[str, list[bool]]] = {"domains": defaultdict(list), "subjects": defaultdict(list)}
    for s in samples:
        groups["domains"][DOMAIN_OF[s["subject"]]].append(s["correct"])
        groups["subjects"][s["subject"]].append(s["correct"])
    return {
        level: {name: {"n": len(v), "accuracy": sum(v) / len(v)} for name, v in sorted(rows.items())}
        for level, rows in groups.items()
    }


async def ask(client, doc: Mapping[str, Any], opts: Mapping[str, Any], model: str) -> dict[str, Any]:
    """One question through `client`'s chat route: the output and its score (no `on_sample`: callers record)."""
    messages = chat_messages(doc, opts["prompt_variant"])
    response = await client.chat(
        {"model": model, "messages": messages, "max_tokens": opts["max_new_tokens"], "temperature": 0}
    )
    output = response["choices"][0]["message"]["content"] or ""
    return {
        "id": doc["id"],
        "subject": subject_of(doc),
        "question_type": doc["question_type"],
        "answer": doc["answer"],
        "images": sum(1 for kind, _ in content_parts(doc, opts["prompt_variant"]) if kind == "image"),
        "prompt_sha256": sha256_text(construct_prompt(doc)),
        "output": output,
        **score(doc, output),
    }


def select_questions(ctx: EvalContext, opts: Mapping[str, Any]) -> list[dict]:
    if opts["prompt_variant"] not in PROMPT_VARIANTS:
        raise unknown_choice(
            "mmmu prompt_variant", opts["prompt_variant"], PROMPT_VARIANTS, where="mmmu.prompt_variant"
        )
    docs = load_questions(opts["source"], opts["split"], opts["subjects"], ctx.base_dir)
    limit = SMOKE_SAMPLES if ctx.smoke else (ctx.limit or opts["limit"])
    return stable_subsample(docs, limit, key=lambda d: str(d["id"]))


class MMMU:
    suite = SUITE

    async def __call__(self, ctx: EvalContext) -> EvalResult:
        check_options(SUITE, ctx.options, OPTIONS)
        opts = {**OPTIONS, **ctx.options}
        docs = select_questions(ctx, opts)

        async def one(doc: dict) -> dict:
            sample = await ask(ctx.client, doc, opts, ctx.model_path)
            ctx.on_sample(sample)
            return sample

        samples = await ctx.client.map(one, docs, progress=f"{SUITE}[{ctx.case_id}]")
        n = len(samples)
        return EvalResult(
            suite=SUITE,
            n=n,
            metrics={
                "accuracy": sum(s["correct"] for s in samples) / n,
                "unparsed_rate": sum(s["unparsed"] for s in samples) / n,
            },
            details={
                "prompt_variant": opts["prompt_variant"],
                "max_new_tokens": opts["max_new_tokens"],
                "open_questions": sum(s["question_type"] == "open" for s in samples),
                "multi_image_questions": sum(s["images"] > 1 for s in samples),
                **breakdown(samples),
                "per_sample_correct": {s["id"]: bool(s["correct"]) for s in samples},
            },
        )
