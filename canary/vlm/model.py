"""The tiny Qwen3-VL of the VLM canary: its config, its processor files, and how it is created and saved.

The text side uses the project's tokenizer (assets/canary/model, vocabulary 512, ids 4-7 the vision tokens) and
its chat template, which renders image parts as `<|vision_start|><|image_pad|><|vision_end|>`. The processor
files are what real SGLang 0.5.17 (transformers 5.17 with torchvision) loads with AutoProcessor; on this CPU
`hf_engine.processor.load_processor` rebuilds the same processor around the PIL image processor.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from canary.vlm.draw import IMAGE_SIZE

TEXT_CANARY_MODEL = Path(__file__).resolve().parents[2] / "assets" / "canary" / "model"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
IM_END, PAD = 2, 3  # <|im_end|> (eos) and <|pad|> in the text canary's vocabulary
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 4, 5, 6, 7
VOCAB_SIZE = 512
PATCH_SIZE, MERGE_SIZE, TEMPORAL_PATCH_SIZE = 16, 2, 2
# The processor's target: the drawing (84 px) rounded to the 32 px grid, 96 x 96 = 3 x 3 merged tokens.
PROCESSED_SIDE = round(IMAGE_SIZE / (PATCH_SIZE * MERGE_SIZE)) * PATCH_SIZE * MERGE_SIZE
IMAGE_PIXELS = PROCESSED_SIDE * PROCESSED_SIDE
TOKENS_PER_IMAGE = (PROCESSED_SIDE // (PATCH_SIZE * MERGE_SIZE)) ** 2
VIDEO_MAX_FRAMES_OF_PIXELS = 8  # the video budget: 8 frames of one image's pixels (video tokens are not trained)
QWEN3_VL_MEAN_STD = [0.5, 0.5, 0.5]  # Qwen3-VL's normalisation, not Qwen2-VL's CLIP one
VISION_POSITION_INIT_STD = 0.5


@dataclass(frozen=True)
class VlmShape:
    """Text: 4 query and 2 KV heads of 32 (TP2 gives each rank 2 + 1), hidden = heads * head_dim. Vision: 2 heads
    of 32. One deepstack level (vision layer 0 into decoder layer 0) keeps that code path of Qwen3-VL in use."""

    hidden_size: int = 128
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 384
    vision_hidden_size: int = 64
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate_size: int = 256
    vision_position_grid: int = 8  # learned position embeddings on an 8x8 grid, interpolated to the patch grid
    deepstack_visual_indexes: tuple[int, ...] = (0,)


def make_config(shape: VlmShape):
    from transformers import Qwen3VLConfig

    if shape.hidden_size != shape.num_attention_heads * shape.head_dim:
        raise ValueError(f"hidden_size {shape.hidden_size} != num_attention_heads * head_dim ({shape!r})")
    # M-RoPE sections (temporal, height, width) cover the head_dim / 2 frequency pairs in Qwen3-VL's proportions
    # (24/20/20 of 64): 6/5/5 of 16 here.
    pairs = shape.head_dim // 2
    mrope_section = [pairs - 2 * (pairs * 5 // 16), pairs * 5 // 16, pairs * 5 // 16]
    text = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=4096,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": mrope_section,
            "mrope_interleaved": True,
        },
        eos_token_id=IM_END,
        pad_token_id=PAD,
        tie_word_embeddings=False,
    )
    vision = dict(
        depth=shape.vision_depth,
        hidden_size=shape.vision_hidden_size,
        intermediate_size=shape.vision_intermediate_size,
        num_heads=shape.vision_heads,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        out_hidden_size=shape.hidden_size,
        num_position_embeddings=shape.vision_position_grid**2,
        deepstack_visual_indexes=list(shape.deepstack_visual_indexes),
    )
    # Untied lm_head: SGLang's Qwen-family loaders have ignored tie_word_embeddings before (canary.tiny).
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=IMAGE_PAD,
        video_token_id=VIDEO_PAD,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        eos_token_id=IM_END,
        pad_token_id=PAD,
        tie_word_embeddings=False,
    )


def make_model(shape: VlmShape, seed: int):
    import torch
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(make_config(shape))
    # transformers initialises the learned position grid at std 0.02 while a patch embedding comes out at about
    # 0.6, so where a patch is starts 30x weaker than what it shows. (Measured: this alone did not make the
    # position family learn faster; the committed canary was trained with it.)
    torch.nn.init.normal_(model.model.visual.pos_embed.weight, std=VISION_POSITION_INIT_STD)
    model.generation_config = GenerationConfig(eos_token_id=IM_END, pad_token_id=PAD, do_sample=False)
    return model


def write_processor_files(model_dir: Path) -> None:
    """Tokenizer files of the text canary, preprocessor_config.json (saved by the PIL image processor, which
    names itself Qwen2VLImageProcessor), processor_config.json and a video_preprocessor_config.json."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    model_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(TEXT_CANARY_MODEL / name, model_dir / name)
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        min_pixels=IMAGE_PIXELS,
        max_pixels=IMAGE_PIXELS,
        image_mean=QWEN3_VL_MEAN_STD,
        image_std=QWEN3_VL_MEAN_STD,
    )
    image_processor.save_pretrained(model_dir)
    # min/max_pixels too: older readers (vLLM, qwen-vl-utils) look for them; transformers maps them onto `size`.
    config_path = model_dir / "preprocessor_config.json"
    config = json.loads(config_path.read_text())
    config.update(min_pixels=IMAGE_PIXELS, max_pixels=IMAGE_PIXELS)
    _write_json(config_path, config)
    _write_json(model_dir / "processor_config.json", {"processor_class": "Qwen3VLProcessor"})
    _write_json(model_dir / "video_preprocessor_config.json", video_processor_config())


def video_processor_config() -> dict:
    """The fields Qwen3VLVideoProcessor saves, with this model's patching and a small pixel budget."""
    return {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "do_sample_frames": True,
        "fps": 2,
        "image_mean": QWEN3_VL_MEAN_STD,
        "image_std": QWEN3_VL_MEAN_STD,
        "max_frames": 768,
        "merge_size": MERGE_SIZE,
        "min_frames": 4,
        "patch_size": PATCH_SIZE,
        "resample": 3,  # bicubic, as for images
        "rescale_factor": 1 / 255,
        "return_metadata": False,
        "size": {"longest_edge": IMAGE_PIXELS * VIDEO_MAX_FRAMES_OF_PIXELS, "shortest_edge": IMAGE_PIXELS},
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "video_processor_type": "Qwen3VLVideoProcessor",
    }


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_model(model, model_dir: Path) -> None:
    """bf16 safetensors (half the bytes; SGLang serves bf16 anyway) plus config and generation config."""
    import torch

    model.to(torch.bfloat16).save_pretrained(model_dir)
    model.to(torch.float32)


def shape_record(shape: VlmShape) -> dict:
    record = asdict(shape)
    record.update(
        vocab_size=VOCAB_SIZE,
        image_size=IMAGE_SIZE,
        processed_side=PROCESSED_SIDE,
        tokens_per_image=TOKENS_PER_IMAGE,
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
    )
    return record
