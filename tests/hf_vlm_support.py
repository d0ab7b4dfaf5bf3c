"""A tiny random Qwen3-VL on the canary tokenizer, images to send it, and a direct transformers reference.

`build_tiny_qwen3_vl(dir)` writes a loadable checkpoint (~0.3 M parameters, 2 text and 2 vision layers, DeepStack
on vision layer 0) with the canary tokenizer and chat template (ids 4-7: <|vision_start|>, <|vision_end|>,
<|image_pad|>, <|video_pad|>), a `Qwen2VLImageProcessorPil` sized so every image is 2-4 tokens (patch 16,
merge 2, 32*32..64*64 pixels), and `processor_class: Qwen3VLProcessor`. Same seed, same weights.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from canary import tiny_vl

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("PIL")

CANARY_MODEL = Path(__file__).resolve().parent.parent / "assets" / "canary" / "model"
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 4, 5, 6, 7
PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


def build_tiny_qwen3_vl(out_dir: str | Path, seed: int = 0, init_std: float = 0.2) -> Path:
    """The tiny VLM (canary/tiny_vl.py), tied embeddings as these tests were measured with."""
    return tiny_vl.build_tiny_qwen3_vl(out_dir, seed=seed, init_std=init_std, tie_word_embeddings=True)


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


# -- what the image serving tests compare with (fp32 on CPU: the bounds only absorb float summation order) --------

TO_TRANSFORMERS = 1e-4  # served logprobs against one transformers forward or `generate`
HIT_TO_COLD = 1e-5  # a cache hit against the cold request, the text cache tests' bound
GREEDY = {"temperature": 0, "ignore_eos": True}
PLACEHOLDER_IDS = [VISION_START, IMAGE_PAD, VISION_END]


# -- the reference ---------------------------------------------------------------------------------------------


class Reference:
    """The tiny VLM and its processor in this process: what one plain transformers call gives. The processor is
    `load_processor`'s, as the engine's: torch-only for video where torchvision is missing, pinned to transformers'
    torchvision path by tests/test_hf_video_fixture.py."""

    def __init__(self, model_dir: Path):
        from transformers import AutoModelForImageTextToText, AutoTokenizer

        from hf_engine.processor import load_processor

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
            out = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
            )
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


# -- fixtures the VLM test modules share (imported by name: `from hf_vlm_support import model_dir, reference`) --


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny VLM, built once per test module."""
    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny_qwen3_vl"))


@pytest.fixture(scope="module")
def reference(model_dir):
    return Reference(model_dir)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Five different noise images: 0, 1 and 4 are 64x64 (4 tokens each), 2 is 48x40 and 3 is 40x64 (2 tokens)."""
    sizes = [(64, 64), (64, 64), (48, 40), (40, 64), (64, 64)]
    folder = tmp_path_factory.mktemp("images")
    out = []
    for seed, size in enumerate(sizes):
        image = random_image(seed, size)
        path = folder / f"image_{seed}.png"
        path.write_bytes(png_bytes(image))
        out.append((image, path))
    return out
