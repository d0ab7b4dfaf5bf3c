"""Build the VLM canary end to end: held-out set, processor files, training, saved model, evaluation, manifest.

Layout of the output directory (the same as the committed `assets/canary-vlm/`):
    model/           Qwen3-VL config, bf16 safetensors, tokenizer + chat template, image/video processor configs
    mmmu/<Subject>/validation-00000-of-00001.parquet   the held-out questions in MMMU's schema (30 x 30)
    videomme/videomme/test-00000-of-00001.parquet, videomme/data/<videoID>.mp4   held-out videos, Video-MME's schema
    manifest.json    sha256 of every other file, shapes, training parameters, accuracies, command, seed,
                     library versions, timings
The evaluation reads the model and the parquet files back from disk, as an engine and the MMMU eval would.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from canary.build import hash_tree, library_versions, write_manifest
from canary.vlm.evaluate import MAX_NEW_TOKENS, evaluate, evaluate_video
from canary.vlm.mmmu_set import SUBJECTS, held_out_questions, load_subject, write_mmmu_set
from canary.vlm.model import VlmShape, make_model, save_model, shape_record, write_processor_files
from canary.vlm.train import VlmTrainConfig, train, train_video_stage
from canary.vlm.videomme_set import held_out_examples, write_set

VARIANTS = ("interleaved", "images_first")


@dataclass(frozen=True)
class VlmBuildOptions:
    out: str | Path
    seed: int = 0
    evaluate: bool = True
    command: str = ""
    shape: VlmShape = field(default_factory=VlmShape)
    train: VlmTrainConfig | None = None  # None: VlmTrainConfig(seed=seed)
    # An image run's model directory to start the video stage from, instead of training one: the image run took 8-14
    # min on this CPU, and did not come out byte-identical on 2026-12-03 to the one committed on 2026-12-02 (same
    # library versions; final loss 0.137 against 0.050), so the committed one is the reproducible start.
    image_model: str | Path | None = None


def vlm_library_versions() -> dict[str, str]:
    """The text canary's list plus what draws, stores and reads the images."""
    from importlib import metadata

    versions = library_versions()
    for name in ("pillow", "datasets", "pyarrow", "numpy"):
        versions[name] = metadata.version(name)
    return versions


def held_out_summary(held_out: dict) -> dict:
    questions = [q for qs in held_out.values() for q in qs]
    keys = [q.key() for q in questions]
    if len(set(keys)) != len(keys):
        raise AssertionError("the held-out set repeats a question (same text, options and drawings)")
    return {
        "schema": "MMMU/MMMU validation: one config per subject, 30 subjects x 30 questions",
        "subjects": len(held_out),
        "questions": len(questions),
        "open": sum(not q.options for q in questions),
        "multi_image": sum(len(q.scenes) > 1 for q in questions),
        "held_out_by": "question text, options and drawing parameters: the training stream skips every held-out key",
    }


def load_docs(mmmu_root: Path) -> list[dict]:
    return [dict(row) for subject in SUBJECTS for row in load_subject(mmmu_root, subject)]


def evaluate_saved(model_dir: Path, mmmu_root: Path) -> dict:
    """Accuracy of the files as written: the bf16 weights (computed in fp32), the processor the HF engine loads,
    the parquet rows the MMMU eval reads; both prompt variants, and the interleaved one with grey images."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from hf_engine.processor import load_processor

    model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = load_processor(model_dir)
    docs = load_docs(mmmu_root)
    results = {variant: evaluate(model, processor, docs, variant)[0].record() for variant in VARIANTS}
    results["blank_images"] = evaluate(model, processor, docs, "interleaved", blank=True)[0].record()
    video_root = mmmu_root.parent / "videomme"
    results["video_frames"] = evaluate_video(model, processor, video_root)
    results["video_first_frame_repeated"] = evaluate_video(model, processor, video_root, "first_frame_repeated")
    results["video_reversed"] = evaluate_video(model, processor, video_root, "reversed")
    return results


def load_image_run(model_dir: Path, shape: VlmShape, seed: int):
    """(model, stats) of an image run saved earlier: the model `train` would have made, with its weights as saved,
    their sha256 and, from the manifest beside the model directory, that run's training record. (Not
    from_pretrained: that writes a dtype into the sub-configs, which the saved config would then carry.)"""
    import hashlib
    import json

    from safetensors.torch import load_file

    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"--image-model {model_dir}: no model.safetensors there")
    model = make_model(shape, seed)
    model.load_state_dict(load_file(weights), strict=True)
    manifest = model_dir.parent / "manifest.json"
    image_run = json.loads(manifest.read_text())["train"] if manifest.is_file() else None
    if image_run:  # a video stage's fields describe the run that made it, not this one's
        image_run = {k: v for k, v in image_run.items() if not k.startswith("video_stage") and k != "frame_hint_weight"}
    stats = {
        "image_model": {
            "path": str(model_dir),
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            "train": image_run,
        }
    }
    return model, stats


def build(opts: VlmBuildOptions, log=sys.stderr) -> dict:
    """Build everything into `opts.out` and return the manifest (also written as manifest.json)."""
    from hf_engine.processor import load_processor

    t_start, load_start = time.perf_counter(), os.getloadavg()
    out = Path(opts.out)
    model_dir, mmmu_root = out / "model", out / "mmmu"
    config = opts.train or VlmTrainConfig(seed=opts.seed)
    if config.seed != opts.seed:
        raise ValueError(f"VlmBuildOptions.seed {opts.seed} != VlmTrainConfig.seed {config.seed}")
    timings = {}

    t = time.perf_counter()
    held_out = held_out_questions(opts.seed)
    data = held_out_summary(held_out)
    write_processor_files(model_dir)
    processor = load_processor(model_dir)
    timings["setup_s"] = round(time.perf_counter() - t, 2)

    held_keys = {q.key() for qs in held_out.values() for q in qs} | {e.key() for e in held_out_examples(opts.seed)}
    if opts.image_model:
        print(f"image run: {opts.image_model} (not trained here)", file=log, flush=True)
        model, train_stats = load_image_run(Path(opts.image_model), opts.shape, opts.seed)
    else:
        print(f"training {opts.shape} for {config.steps} steps", file=log, flush=True)
        model, train_stats = train(processor, opts.shape, config, held_keys, log=log)
        timings["train_s"] = train_stats.pop("train_seconds")
    n_params = sum(p.numel() for p in model.parameters())
    save_model(
        model, model_dir
    )  # also rounds the weights in memory to bf16: the video stage starts from the saved ones
    if config.video_stage_steps:
        print(f"video stage: {config.video_stage_steps} steps", file=log, flush=True)
        video_stats = train_video_stage(model, processor, config, held_keys, log=log)
        timings["video_stage_s"] = video_stats.pop("video_stage_seconds")
        train_stats.update(video_stats)
        save_model(model, model_dir)

    t = time.perf_counter()
    write_mmmu_set(mmmu_root, held_out)
    data["videomme"] = write_set(out / "videomme", opts.seed)
    data["parquet_bytes"] = sum(p.stat().st_size for p in mmmu_root.rglob("*.parquet"))
    timings["dataset_s"] = round(time.perf_counter() - t, 2)

    manifest = {
        "name": "canary-vlm-qwen3vl",
        "command": opts.command or f"python -m canary vlm --out {out} --seed {opts.seed}",
        "seed": opts.seed,
        "files": hash_tree(out),
        "parameters": n_params,
        "model": shape_record(opts.shape),
        "train": {**asdict(config), **train_stats},
        "data": data,
        "versions": {**vlm_library_versions(), "platform": platform.platform()},
    }
    if opts.evaluate:
        t = time.perf_counter()
        manifest["accuracy"] = evaluate_saved(model_dir, mmmu_root)
        manifest["eval"] = {
            "decoding": f"greedy, transformers generate (max {MAX_NEW_TOKENS} new tokens), batched with left "
            "padding, bf16 weights computed in fp32 on CPU",
            "prompt": "harness.evals.mmmu.content_parts (lmms-eval construct_prompt) through the chat template",
            "scoring": "multiple choice: the stripped reply is the answer letter; open: case, spaces and a final "
            "full stop ignored, numbers compared as numbers",
            "blank_images": "every image replaced by a uniform grey (128) image of the same size",
            "chance": "mean over questions of 1 / options (open: 1 / the family's possible answers)",
        }
        timings["eval_s"] = round(time.perf_counter() - t, 1)
    return write_manifest(out, manifest, timings, config.threads, t_start, load_start)
