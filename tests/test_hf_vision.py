"""The HF engine's vision features across transformers versions: DeepStack rows come per image or all in one."""

from __future__ import annotations

import pytest
from hf_vlm_support import build_tiny_qwen3_vl, random_image

torch = pytest.importorskip("torch")


def test_deepstack_rows_are_split_per_image_in_both_transformers_forms(tmp_path):
    """transformers 5.23 returns a tuple per image per DeepStack layer; 5.17 (the GPU image) one tensor per layer.
    Both must give the engine the same rows per image, exactly (one tensor split, no arithmetic)."""
    from transformers import Qwen3VLForConditionalGeneration

    from hf_engine.processor import load_processor
    from hf_engine.vision import per_image

    model_dir = build_tiny_qwen3_vl(tmp_path / "model")
    model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = load_processor(model_dir)
    pictures = [random_image(1, (48, 40)), random_image(2, (64, 64))]
    inputs = processor.image_processor(images=pictures, return_tensors="pt")
    with torch.inference_mode():
        out = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True)
    sizes = [len(rows) for rows in out.pooler_output]
    assert len(sizes) == 2 and sizes[0] != sizes[1]
    for layer in out.deepstack_features:
        split = per_image(layer, sizes)
        joined = per_image(torch.cat(list(layer)), sizes)  # the 5.17 form
        assert (
            [r.shape for r in split]
            == [r.shape for r in joined]
            == [(n, model.config.text_config.hidden_size) for n in sizes]
        )
        assert all(torch.equal(a, b) for a, b in zip(split, joined))
