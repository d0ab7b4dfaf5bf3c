"""A tiny random Qwen3-VL on the canary tokenizer, and a small MMMU-schema set of drawn images to send it.

Random weights, so no accuracy: it checks image serving, the multimodal prefix cache and parity between engines
on CPU and on SGLang, until the trained canary VLM lands. ~0.3 M parameters, 2 text and 2 vision layers,
DeepStack on vision layer 0, the canary tokenizer and chat template (ids 4-7: <|vision_start|>, <|vision_end|>,
<|image_pad|>, <|video_pad|>), a `Qwen2VLImageProcessorPil` sized so every image is 2-4 tokens (patch 16,
merge 2, 32*32..64*64 pixels) and `processor_class: Qwen3VLProcessor`. Same seed, same files:

    python -m canary.tiny_vl --out assets/qwen3-vl-tiny --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

CANARY_MODEL = Path(__file__).resolve().parents[1] / "assets" / "canary" / "model"
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 4, 5, 6, 7
VIDEO_PROCESSOR = {
    "video_processor_type": "Qwen3VLVideoProcessor",
    "processor_class": "Qwen3VLProcessor",
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "size": {"shortest_edge": 32 * 32 * 2, "longest_edge": 64 * 64 * 16},
    "fps": 2.0,
    "min_frames": 2,
    "max_frames": 16,
    "do_sample_frames": True,
    "do_resize": True,
    "do_rescale": True,
    "do_normalize": True,
    "do_convert_rgb": True,
    "rescale_factor": 1 / 255,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}
MMMU_FEATURES = (
    "id",
    "question",
    "options",
    "explanation",
    "img_type",
    "answer",
    "topic_difficulty",
    "question_type",
    "subfield",
)


def build_tiny_qwen3_vl(
    out_dir: str | Path, seed: int = 0, init_std: float = 0.2, tie_word_embeddings: bool = True
) -> Path:
    """Write the tiny VLM into `out_dir`. `init_std` is larger than HF's 0.02 so images move the logits visibly.
    The committed asset unties the embeddings: SGLang 0.5.17 left a tied checkpoint's lm_head at zero (2026-11-22)."""
    import torch
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(CANARY_MODEL / name, out / name)
    vocab = json.loads((CANARY_MODEL / "config.json").read_text())["vocab_size"]
    text = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [6, 5, 5],
            "mrope_interleaved": True,
        },
        eos_token_id=2,
        pad_token_id=3,
        bos_token_id=None,
        initializer_range=init_std,
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=64,
        num_position_embeddings=64,
        deepstack_visual_indexes=[0],
        initializer_range=init_std,
    )
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=IMAGE_PAD,
        video_token_id=VIDEO_PAD,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=init_std,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=2, pad_token_id=3, do_sample=False)
    model.save_pretrained(out)
    processor = Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32, max_pixels=64 * 64
    )
    processor.save_pretrained(out)  # writes image_processor_type: Qwen2VLImageProcessor
    (out / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen3VLProcessor"}) + "\n")
    # Written by hand: Qwen3VLVideoProcessor needs torchvision to save itself. Frames the size of the images, so a
    # short clip costs tens of tokens (for the video suites, issue 14).
    (out / "video_preprocessor_config.json").write_text(json.dumps(VIDEO_PROCESSOR, indent=2) + "\n")
    return out


def drawn_image(seed: int, size: tuple[int, int] = (64, 64)):
    """Three random filled rectangles on a random background: varied pixels that compress to a few hundred bytes."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = rng.randrange(size[0] - 8), rng.randrange(size[1] - 8)
        draw.rectangle(
            (x0, y0, x0 + rng.randrange(8, 40), y0 + rng.randrange(8, 40)),
            fill=tuple(rng.randrange(256) for _ in range(3)),
        )
    return image


def mmmu_rows(subject: str, per_subject: int, seed: int, image=drawn_image) -> list[dict]:
    """Questions in MMMU's hub schema: multiple choice with one or (every third) two images, every fourth open."""
    rows = []
    for i in range(1, per_subject + 1):
        two, open_question = i % 3 == 0, i % 4 == 0
        rows.append(
            {
                "id": f"validation_{subject}_{i}",
                "question": "Which of <image 1> and <image 2> is brighter?" if two else "What colour is <image 1>?",
                "options": "[]" if open_question else "['red', 'green', 'blue']",
                "explanation": "",
                "img_type": "['Diagrams']",
                "topic_difficulty": "Easy",
                "answer": "red" if open_question else "ABC"[i % 3],
                "question_type": "open" if open_question else "multiple-choice",
                "subfield": subject,
                "image_1": image(seed + i, (64, 64)),
                "image_2": image(seed + i + 50, (64, 64)) if two else None,
                **{f"image_{k}": None for k in range(3, 8)},
            }
        )
    return rows


def write_mmmu(root: str | Path, subjects, per_subject: int = 6, image=drawn_image) -> Path:
    """`<root>/<Subject>/validation-00000-of-00001.parquet` with datasets' Image features, as the hub serves MMMU."""
    import datasets

    features = datasets.Features(
        {
            **{k: datasets.Value("string") for k in MMMU_FEATURES},
            **{f"image_{k}": datasets.Image() for k in range(1, 8)},
        }
    )
    root = Path(root)
    for index, subject in enumerate(subjects):
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        rows = mmmu_rows(subject, per_subject, 100 * index, image)
        datasets.Dataset.from_list(rows, features=features).to_parquet(
            str(folder / "validation-00000-of-00001.parquet")
        )
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-subject", type=int, default=2)
    args = parser.parse_args()
    from harness.evals.mmmu import SUBJECTS

    build_tiny_qwen3_vl(args.out / "model", seed=args.seed, tie_word_embeddings=False)
    write_mmmu(args.out / "mmmu", SUBJECTS, args.per_subject)
    print(f"wrote {args.out}/model and {args.out}/mmmu ({len(SUBJECTS)} subjects x {args.per_subject})")


if __name__ == "__main__":
    main()
