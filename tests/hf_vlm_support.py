"""A tiny random Qwen3-VL on the canary tokenizer, images to send it, and a direct transformers reference.

`build_tiny_qwen3_vl(dir)` writes a loadable checkpoint (~0.3 M parameters, 2 text and 2 vision layers, DeepStack
on vision layer 0) with the canary tokenizer and chat template (ids 4-7: <|vision_start|>, <|vision_end|>,
<|image_pad|>, <|video_pad|>), a `Qwen2VLImageProcessorPil` sized so every image is 2-4 tokens (patch 16,
merge 2, 32*32..64*64 pixels), and `processor_class: Qwen3VLProcessor`. Same seed, same weights.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("PIL")

CANARY_MODEL = Path(__file__).resolve().parent.parent / "assets" / "canary" / "model"
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 4, 5, 6, 7
PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


def build_tiny_qwen3_vl(out_dir: str | Path, seed: int = 0, init_std: float = 0.2) -> Path:
    """Write the tiny VLM into `out_dir`. `init_std` is larger than HF's 0.02 so images move the logits visibly."""
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(CANARY_MODEL / name, out / name)
    vocab = json.loads((CANARY_MODEL / "config.json").read_text())["vocab_size"]
    text = dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=4096, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [6, 5, 5], "mrope_interleaved": True},
        eos_token_id=2, pad_token_id=3, bos_token_id=None, initializer_range=init_std,
    )  # fmt: skip
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
        temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=64, deepstack_visual_indexes=[0],
        initializer_range=init_std,
    )  # fmt: skip
    config = Qwen3VLConfig(
        text_config=text, vision_config=vision, image_token_id=IMAGE_PAD, video_token_id=VIDEO_PAD,
        vision_start_token_id=VISION_START, vision_end_token_id=VISION_END, tie_word_embeddings=True,
        initializer_range=init_std,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=2, pad_token_id=3, do_sample=False)
    model.save_pretrained(out)
    processor = Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32, max_pixels=64 * 64
    )
    processor.save_pretrained(out)  # writes image_processor_type: Qwen2VLImageProcessor
    (out / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen3VLProcessor"}) + "\n")
    return out


# -- images ---------------------------------------------------------------------------------------------------


def random_image(seed: int, size: tuple[int, int] = (48, 40)):
    """A noise RGB image (width, height); different seeds, different pixels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


# -- the reference ---------------------------------------------------------------------------------------------


class Reference:
    """The tiny VLM and its processor in this process: what one plain transformers call gives."""

    def __init__(self, model_dir: Path):
        from transformers import AutoModelForImageTextToText, AutoTokenizer

        from harness.engines.hf.processor import load_processor

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.processor = load_processor(model_dir, self.tokenizer)
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()

    def chat_text(self, content: list[dict]) -> str:
        """The template's text for one user turn (image parts as the template renders them)."""
        messages = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def inputs(self, text: str, images: list):
        return self.processor(text=[text], images=images or None, return_tensors="pt")

    def greedy(self, text: str, images: list, max_new_tokens: int):
        """`model.generate` greedy tokens and their raw-logit logprobs, and the prompt ids."""
        inputs = self.inputs(text, images)
        self.model.model.rope_deltas = None  # generate keeps it between calls
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                      output_logits=True, return_dict_in_generate=True)  # fmt: skip
        prompt = inputs["input_ids"][0].tolist()
        tokens = out.sequences[0, len(prompt) :].tolist()
        logprobs = [torch.log_softmax(row[0].float(), -1)[t].item() for row, t in zip(out.logits, tokens)]
        return prompt, tokens, logprobs

    def prompt_logprobs(self, text: str, images: list) -> list[float]:
        """log p(ids[i] | ids[:i]) for i >= 1 from one `model(**processor_outputs)` call."""
        inputs = self.inputs(text, images)
        self.model.model.rope_deltas = None
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0].float()
        ids = inputs["input_ids"][0]
        rows = torch.log_softmax(logits[:-1], dim=-1)
        return rows.gather(1, ids[1:, None])[:, 0].tolist()
