"""The HF engine's video preprocessing against transformers' own, torchvision path, through a committed fixture.

No CPU environment of this project installs torchvision (PyPI has CUDA builds only), so the engine loads the
canary VLM's Qwen3-VL video processor with its torchvision calls replaced by torch operations
(hf_engine/video_input.py). What it must equal is not our code: tests/data/video_processor/ holds what
transformers 5.23.0's `Qwen3VLVideoProcessor` with torchvision 0.28.0 made of a fixed noise clip
(scripts/video_processor_fixture.py wrote it in a throwaway venv; its json says which versions), upscaled as
configured, upscaled further and downscaled. The engine's processor, as `load_processor` gives it on this machine,
must give the same grid, the same uint8 level for every value, and the same float32 bytes (sha256).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "data" / "video_processor" / "qwen3vl_torchvision"
MODEL = REPO / "assets" / "canary-vlm" / "model"
PROVENANCE = json.loads(FIXTURE.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def engine_video_processor():
    from transformers import AutoTokenizer

    from hf_engine.processor import load_processor

    return load_processor(MODEL, AutoTokenizer.from_pretrained(MODEL)).video_processor


def levels(pixel_values: np.ndarray) -> np.ndarray:
    """As the fixture's script: the uint8 level of each value normalized with mean 0.5, std 0.5."""
    return ((pixel_values.astype(np.float64) + 1) * 127.5).round().astype(np.uint8)


def test_the_fixture_came_from_transformers_torchvision_path():
    assert PROVENANCE["processor"] == "transformers.models.qwen3_vl.video_processing_qwen3_vl.Qwen3VLVideoProcessor"
    assert PROVENANCE["torchvision"].startswith("0.28.0") and PROVENANCE["transformers"] == "5.23.0"
    assert set(PROVENANCE["cases"]) == {"as_configured", "upscaled_more", "downscaled"}


@pytest.mark.parametrize("case", sorted(PROVENANCE["cases"]))
def test_the_engines_video_processor_equals_transformers_torchvision_one(engine_video_processor, case):
    from transformers.video_utils import VideoMetadata

    expected = PROVENANCE["cases"][case]
    with np.load(FIXTURE.with_suffix(".npz")) as arrays:
        frames, want = arrays["frames"], arrays[f"{case}.levels"]
    out = engine_video_processor(
        videos=[frames],
        video_metadata=[VideoMetadata(total_num_frames=len(frames), fps=PROVENANCE["fps"])],
        do_sample_frames=True,
        return_tensors="pt",
        **expected["kwargs"],
    )
    pixels = out["pixel_values_videos"].numpy()
    assert out["video_grid_thw"].tolist() == expected["video_grid_thw"]
    assert list(pixels.shape) == expected["pixel_values_videos_shape"] == list(want.shape)
    differ = levels(pixels).astype(int) - want
    assert not differ.any(), (
        f"{case}: {np.count_nonzero(differ)} of {differ.size} values at another uint8 level than torchvision's "
        f"(up to {np.abs(differ).max()} levels)"
    )
    assert hashlib.sha256(pixels.astype("<f4").tobytes()).hexdigest() == expected["pixel_values_videos_sha256"]
