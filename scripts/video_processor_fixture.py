"""Write tests/data/video_processor/: what transformers' own Qwen3-VL video processor, on its torchvision path, makes
of fixed noise frames, for tests/test_hf_video_fixture.py to compare the HF engine's video preprocessing with.

The HF engine (hf_engine/video_input.py) replaces the processor's torchvision calls with torch operations, since no
CPU environment of this project can install torchvision (PyPI has CUDA builds only; one beside CPU torch breaks
`import transformers`). A reference produced by that same code would compare it with itself, so this script must
run where the real torchvision is installed, with the versions of constraints.txt, e.g. a throwaway venv:

    python3.11 -m venv /tmp/tvref
    /tmp/tvref/bin/pip install torch==2.13.0 torchvision==0.28.0 transformers==5.23.0 numpy==2.4.6
    /tmp/tvref/bin/python scripts/video_processor_fixture.py

It imports nothing of this project: the processor is transformers' class, configured by the committed canary
VLM's video_preprocessor_config.json. Frames are seeded noise (noise is where a float resize differed from
torchvision's uint8 kernel by 20 levels, 2026-12-02), stored in the fixture as the input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "assets" / "canary-vlm" / "model"
OUT = REPO / "tests" / "data" / "video_processor"
FPS = 4.0
CLIP = (8, 48, 64)  # frames, height, width: 4 temporal patches of 2 after sampling at 2 fps
# name -> the processor call's own keyword arguments (beside the config's)
CASES = {
    "as_configured": {},  # below min_pixels: upscaled
    "upscaled_more": {"size": {"shortest_edge": 96 * 96 * 2, "longest_edge": 96 * 96 * 16}},
    "downscaled": {"size": {"shortest_edge": 32 * 32, "longest_edge": 32 * 32 * 8}},
}


def levels(pixel_values) -> np.ndarray:
    """The uint8 level each normalized value came from (mean 0.5, std 0.5: (x - 127.5) / 127.5), a quarter of the
    float32 bytes: the fixture keeps them, and the float32 bytes' sha256 for the last bit."""
    return ((pixel_values.astype(np.float64) + 1) * 127.5).round().astype(np.uint8)


def main() -> None:
    import hashlib

    import torch
    import torchvision
    import transformers
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
    from transformers.utils import is_torchvision_available
    from transformers.video_utils import VideoMetadata

    if not is_torchvision_available():
        sys.exit("torchvision does not import here: this fixture must come from transformers' torchvision path")
    processor = Qwen3VLVideoProcessor.from_pretrained(MODEL)
    OUT.mkdir(parents=True, exist_ok=True)
    clip = np.random.default_rng(0).integers(0, 256, (*CLIP, 3), dtype=np.uint8)
    arrays, cases = {"frames": clip}, {}
    for name, kwargs in CASES.items():
        out = processor(
            videos=[clip],
            video_metadata=[VideoMetadata(total_num_frames=CLIP[0], fps=FPS)],
            do_sample_frames=True,
            return_tensors="pt",
            **kwargs,
        )
        pixels = out["pixel_values_videos"].numpy()
        assert pixels.dtype == np.float32 and np.abs(levels(pixels) / 127.5 - 1 - pixels).max() < 1e-6  # levels exact
        arrays[f"{name}.levels"] = levels(pixels)
        cases[name] = {
            "kwargs": kwargs,
            "video_grid_thw": out["video_grid_thw"].tolist(),
            "pixel_values_videos_shape": list(pixels.shape),
            "pixel_values_videos_sha256": hashlib.sha256(pixels.astype("<f4").tobytes()).hexdigest(),
        }
    np.savez_compressed(OUT / "qwen3vl_torchvision.npz", **arrays)
    provenance = {
        "produced_by": "scripts/video_processor_fixture.py",
        "processor": f"{type(processor).__module__}.{type(processor).__name__}",
        "config": str(MODEL.relative_to(REPO) / "video_preprocessor_config.json"),
        "fps": FPS,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "cases": cases,
    }
    (OUT / "qwen3vl_torchvision.json").write_text(json.dumps(provenance, indent=1) + "\n")
    print(json.dumps(provenance, indent=1))


if __name__ == "__main__":
    main()
