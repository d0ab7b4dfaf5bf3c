"""The VLM canary: its generated questions, the committed MMMU-schema set, model and processor, and its skill."""

from __future__ import annotations

import ast
import functools
import json
import operator
import re
from collections import Counter
from pathlib import Path

import pytest

from canary.vlm.curriculum import batches
from canary.vlm.draw import BACKGROUND, COLOURS, IMAGE_SIZE, png_bytes
from canary.vlm.mmmu_set import (
    COLUMNS,
    FAMILY_OF_SUBFIELD,
    MAX_IMAGES,
    QUESTIONS_PER_SUBJECT,
    SUBJECTS,
    held_out_questions,
)
from canary.vlm.tasks import CANARY_FAMILIES, FAMILIES, generate_questions

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "canary-vlm"
MANIFEST = ASSETS / "manifest.json"
MMMU_ROOT = ASSETS / "mmmu"
# Blank-image bound for multiple choice: the recorded chance level (mean of 1/options, about 0.36) plus 0.15, over
# 4 sampled questions per subject (105 or so multiple choice): a blind guesser exceeds it with probability < 0.1 %,
# while a model that reads anything from grey pixels would sit near its 0.95+ with real images.
BLANK_MARGIN = 0.15


@pytest.fixture(scope="module")
def held_out():
    return held_out_questions(0)


def test_generated_questions_are_deterministic_and_well_formed():
    for family in FAMILIES:
        first = generate_questions(family, 40, seed=3, open_fraction=0.3)
        assert [q.key() for q in first] == [q.key() for q in generate_questions(family, 40, 3, 0.3)]
        assert [q.key() for q in first] != [q.key() for q in generate_questions(family, 40, 4, 0.3)]
        for q in first:
            tags = {int(n) for n in re.findall(r"<image (\d+)>", q.question + " ".join(q.options))}
            assert tags == set(range(1, len(q.scenes) + 1))
            if q.options:
                assert 2 <= len(q.options) <= 5 and len(set(q.options)) == len(q.options)
                assert q.answer in "ABCDE"[: len(q.options)]


def test_colour_answers_are_in_the_pixels():
    """The colour named by the answer is the colour of the drawn shape's pixels, and the only one besides white."""
    for q in generate_questions("colour", 30, seed=5, open_fraction=0.5):
        colour = q.answer if not q.options else q.options["ABCDE".index(q.answer)]
        pixels = {
            pixel
            for row in range(IMAGE_SIZE)
            for pixel in (q.images()[0].getpixel((col, row)) for col in range(IMAGE_SIZE))
        }
        assert pixels == {BACKGROUND, COLOURS[colour]}


def test_training_stream_never_meets_the_held_out_set(held_out):
    from canary.vlm.train import VlmTrainConfig

    keys = {q.key() for qs in held_out.values() for q in qs}
    config = VlmTrainConfig(steps=300, drill_steps=100)
    seen = {question.key() for batch in batches(config, keys) for question, _ in batch}
    assert len(seen) > 3000 and not seen & keys


def _load(subject):
    from canary.vlm.mmmu_set import load_subject

    return load_subject(MMMU_ROOT, subject)


def test_mmmu_set_has_the_hub_schema():
    from PIL.Image import Image

    rows = []
    for subject in SUBJECTS:
        ds = _load(subject)
        assert list(ds.features) == list(COLUMNS)
        assert [type(ds.features[f"image_{i}"]).__name__ for i in range(1, MAX_IMAGES + 1)] == ["Image"] * MAX_IMAGES
        assert [r["id"] for r in ds] == [f"validation_{subject}_{n}" for n in range(1, QUESTIONS_PER_SUBJECT + 1)]
        rows += list(ds)
    assert len(rows) == 30 * 30 == 900
    types = Counter(r["question_type"] for r in rows)
    assert types["open"] == 90 and types["multiple-choice"] == 810
    multi = 0
    for r in rows:
        options = ast.literal_eval(r["options"])
        assert isinstance(options, list) and isinstance(r["options"], str)
        if r["question_type"] == "multiple-choice":
            assert 2 <= len(options) <= 5 and r["answer"] in "ABCDE"[: len(options)]
        else:
            assert options == [] and r["answer"] and r["answer"] not in "ABCDE"
        tags = {int(n) for n in re.findall(r"<image (\d+)>", r["question"] + r["options"])}
        used = [i for i in range(1, MAX_IMAGES + 1) if r[f"image_{i}"] is not None]
        assert used == sorted(tags) == list(range(1, len(used) + 1))
        assert all(isinstance(r[f"image_{i}"], Image) and r[f"image_{i}"].size == (IMAGE_SIZE,) * 2 for i in used)
        multi += len(used) > 1
        assert isinstance(ast.literal_eval(r["img_type"]), list)
        assert r["topic_difficulty"] in {"Easy", "Medium", "Hard"} and r["explanation"] == ""
        assert r["subfield"] in FAMILY_OF_SUBFIELD
    assert 100 <= multi <= 500
    assert {FAMILY_OF_SUBFIELD[r["subfield"]] for r in rows} == set(CANARY_FAMILIES)


def test_committed_set_matches_the_generator(held_out):
    """Every committed row is the generator's question with byte-identical images, and no pair repeats."""
    seen = set()
    for subject in ("Art", "Math", "Sociology"):
        for row, question in zip(_load(subject), held_out[subject]):
            assert (row["question"], row["options"], row["answer"]) == (
                question.question,
                str(list(question.options)),
                question.answer,
            )
            images = [png_bytes(row[f"image_{i}"]) for i in range(1, len(question.scenes) + 1)]
            assert images == [png_bytes(im) for im in question.images()]
            seen.add((tuple(images), row["question"], row["options"]))
    assert len(seen) == 90


def test_manifest_hashes_match_committed_files():
    from canary.build import hash_tree

    manifest = json.loads(MANIFEST.read_text())
    assert hash_tree(ASSETS) == manifest["files"]
    assert {
        "model/model.safetensors",
        "model/preprocessor_config.json",
        "mmmu/Art/validation-00000-of-00001.parquet",
    } <= set(manifest["files"])
    assert sum((ASSETS / f).stat().st_size for f in manifest["files"]) < 6_000_000


def test_manifest_records_the_required_accuracy():
    accuracy = json.loads(MANIFEST.read_text())["accuracy"]
    assert accuracy["interleaved"]["n"] == accuracy["images_first"]["n"] == 900
    assert accuracy["interleaved"]["accuracy"] >= 0.95
    # images first: every family but which_image, whose options name images by tag (train.VlmTrainConfig says why)
    others = [r for f, r in accuracy["images_first"]["by_family"].items() if f != "which_image"]
    assert sum(r["correct"] for r in others) / sum(r["n"] for r in others) >= 0.95
    blank = accuracy["blank_images"]
    assert blank["accuracy"] <= blank["chance"] + BLANK_MARGIN
    assert set(accuracy["interleaved"]["by_family"]) == set(CANARY_FAMILIES)


@pytest.fixture(scope="module")
def canary_vlm():
    pytest.importorskip("torch")
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from hf_engine.processor import load_processor

    model_dir = ASSETS / "model"
    model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, load_processor(model_dir)


def test_committed_model_and_processor_load(canary_vlm):
    from canary.vlm.model import TOKENS_PER_IMAGE
    from canary.vlm.tasks import generate_questions as questions

    model, processor = canary_vlm
    cfg = model.config
    assert cfg.model_type == "qwen3_vl" and (cfg.image_token_id, cfg.video_token_id) == (6, 7)
    assert (cfg.vision_start_token_id, cfg.vision_end_token_id) == (4, 5)
    assert model.generation_config.eos_token_id == processor.tokenizer.eos_token_id == 2
    assert cfg.text_config.head_dim >= 32 and cfg.text_config.num_key_value_heads % 2 == 0
    image = questions("colour", 1, seed=0)[0].images()[0]
    out = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[image], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 6, 6]]
    assert (out["input_ids"] == 6).sum().item() == TOKENS_PER_IMAGE == 9


def _sample_docs():
    return [dict(row) for subject in SUBJECTS for row in list(_load(subject))[:4]]


def test_committed_model_sees_the_images(canary_vlm):
    from canary.vlm.evaluate import evaluate
    from harness.report.versions import installed_versions, warn_unless_recorded

    warn_unless_recorded(installed_versions(), MANIFEST)
    model, processor = canary_vlm
    docs = _sample_docs()
    score, replies = evaluate(model, processor, docs, "interleaved")
    # 0.9 on these 120 (the first 4 of each subject): the video-trained canary scores 112/120 here and 881/900 on
    # the whole set, which the manifest test holds to 0.95
    assert score.accuracy >= 0.9, list(zip([d["id"] for d in docs], replies))
    mc = [d for d in docs if d["question_type"] == "multiple-choice"]
    blank, _ = evaluate(model, processor, mc, "interleaved", blank=True)
    assert blank.accuracy <= blank.chance_sum / blank.n + BLANK_MARGIN


@pytest.mark.slow
def test_rebuild_is_byte_identical(tmp_path):
    """Same seed, image run, library versions and CPU kind -> the same bytes as the committed manifest (the video
    stage from the committed image run: assets/canary-vlm-image-run/README.md says why not from scratch)."""
    from canary.vlm.build import VlmBuildOptions, build, vlm_library_versions
    from harness.report.versions import version_differences

    manifest = json.loads(MANIFEST.read_text())
    recorded = {k: v for k, v in manifest["versions"].items() if k != "platform"}
    differ = version_differences(recorded, vlm_library_versions())
    if differ:
        pytest.skip(f"float results depend on library versions and CPU kind; these differ from the manifest: {differ}")
    image_model = ASSETS.parent / "canary-vlm-image-run" / "model"
    rebuilt = build(VlmBuildOptions(out=tmp_path, seed=manifest["seed"], evaluate=False, image_model=image_model))
    assert rebuilt["files"] == manifest["files"]


def test_the_video_stage_started_from_the_committed_image_run():
    import hashlib

    weights = ASSETS.parent / "canary-vlm-image-run" / "model" / "model.safetensors"
    recorded = json.loads(MANIFEST.read_text())["train"]["image_model"]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == recorded["sha256"]
    assert recorded["train"]["steps"] == 2600 and recorded["train"]["final_loss"] == 0.04972


def test_manifest_records_the_video_set_and_its_controls():
    """The build writes and scores the Video-MME-schema set (30 videos, 90 questions, frames decoded from the mp4s as
    the eval sends them): at least 0.9 on the held-out videos; with the first frame repeated (a blank one) no better
    than chance plus the blank margin; with the frames reversed, `last` (Temporal Reasoning) reads the blank frame
    and must lose most of what it had, so the canary uses the order of frames."""
    manifest = json.loads(MANIFEST.read_text())
    assert manifest["data"]["videomme"]["questions"] == 90 and manifest["data"]["videomme"]["videos"] == 30
    assert sum(f.startswith("videomme/data/") and f.endswith(".mp4") for f in manifest["files"]) == 30
    accuracy = manifest["accuracy"]
    assert accuracy["video_frames"]["n"] == accuracy["video_first_frame_repeated"]["n"] == 90
    assert accuracy["video_frames"]["accuracy"] >= 0.9
    repeated = accuracy["video_first_frame_repeated"]
    assert repeated["accuracy"] <= repeated["chance"] + BLANK_MARGIN
    ordered, reversed_ = (
        accuracy[k]["by_task_type"]["Temporal Reasoning"]["accuracy"] for k in ("video_frames", "video_reversed")
    )
    assert ordered - reversed_ >= 0.3


def test_video_rows_are_whole_batches_of_held_out_free_8_frame_prompts(canary_vlm, held_out):
    """With `video_fraction` the task phase mixes in batches of Video-MME rows (never a held-out video question),
    each the eval's frames prompt: 8 frames of 9 tokens, then lmms-eval's text ending "The best answer is:"."""
    from canary.vlm.train import VlmTrainConfig, encode_example
    from canary.vlm.videomme_set import VideoExample, held_out_examples

    keys = {q.key() for qs in held_out.values() for q in qs} | {e.key() for e in held_out_examples(0)}
    config = VlmTrainConfig(steps=60, drill_steps=10, video_fraction=0.5)
    rows = list(batches(config, keys))
    video = [b for b in rows if isinstance(b[0][0], VideoExample)]
    assert 10 <= len(video) <= 40 and all(len(b) == config.video_batch_size for b in video)
    assert all(isinstance(q, VideoExample) == isinstance(b[0][0], VideoExample) for b in rows for q, _ in b)
    assert not {q.key() for b in video for q, _ in b} & keys
    _, processor = canary_vlm
    example = video[0][0][0]
    encoded, target = encode_example(processor, example, "frames")
    assert encoded["input_ids"].count(6) == 8 * 9 and encoded["image_grid_thw"].shape[0] == 8
    text = processor.tokenizer.decode(encoded["input_ids"])
    assert text.rstrip().endswith("The best answer is:<|im_end|>\n<|im_start|>assistant")
    assert processor.tokenizer.decode(target) == example.answer + "<|im_end|>"


def test_video_questions_need_several_frames_and_last_needs_their_order():
    """appears: exactly one option is a colour the video shows; changes: yes iff two colours; last: the end colour.
    Frame 0 is blank (the repeated-first-frame control), and reversed, the last frame is that blank one."""
    import random

    from canary.vlm.videomme_set import DURATIONS, make_video

    rng = random.Random(3)
    for _ in range(60):
        video = make_video(rng, rng.choice(list(DURATIONS.values())))
        colours = [scene[0].colour for scene in video.frames if scene]
        assert video.frames[0] == () and all(video.frames[1:])
        answers = {
            family: dict(o.split(". ", 1) for o in options)[letter] for family, _, options, letter in video.questions
        }
        (_, _, appears_options, _), *_ = video.questions
        assert [family for family, *_ in video.questions] == ["appears", "changes", "last"]
        assert sum(o.split(". ", 1)[1] in colours for o in appears_options) == 1 and answers["appears"] in colours
        assert answers["changes"] == ("yes" if len(set(colours)) == 2 else "no")
        assert answers["last"] == colours[-1]


def test_frame_hints_pull_each_frame_to_the_one_before_and_the_answer_to_the_asked_frames():
    """frame_spans finds each frame's run of image pads; frame_hint_loss is ~0 for attention that already looks
    where the hints say and large for attention that looks elsewhere; rows that are not 8-frame video rows add
    nothing (None when none is left)."""
    torch = pytest.importorskip("torch")
    from canary.vlm.hints import FRAME_HINT_HEAD, frame_hint_loss, frame_spans

    pad = 6
    ids = [1] + functools.reduce(operator.iadd, ([4] + [pad] * 3 + [5] for _ in range(8)), []) + [9, 9, 9]
    spans = frame_spans(ids, pad)
    assert spans == [(2 + 5 * k, 5 + 5 * k) for k in range(8)]
    n = len(ids)

    def attention(where):
        a = torch.full((1, 4, n, n), 1e-9)
        where(a[0, FRAME_HINT_HEAD])
        return a

    def right(head):
        for (s, e), (ps, pe) in zip(spans[1:], spans[:-1]):
            head[s:e, ps:pe] = 1 / (pe - ps)
        head[n - 1, spans[7][0] : spans[7][1]] = 1 / 3

    def wrong(head):
        head[:, 0] = 1.0

    good = frame_hint_loss([attention(right), attention(right)], [ids], ["last"], pad)
    bad = frame_hint_loss([attention(wrong), attention(wrong)], [ids], ["last"], pad)
    assert good.item() < 1e-5 and bad.item() > 10
    assert frame_hint_loss([attention(wrong)] * 2, [ids], [None], pad) is None
    assert frame_hint_loss([attention(wrong)] * 2, [ids[:-8]], ["last"], pad) is None  # 7 frames: not a video row
