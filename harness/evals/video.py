"""Video files for the harness: decode with OpenCV, choose frames by a named rule, and send them either way.

One library decodes everywhere the harness does it: the Video-MME eval's client-side frames, the HF reference
engine's `video_url`, and (through the kit's decord stand-in over cv2) SGLang on the lent GPU image, so a frame
means the same pixels on every path. OpenCV also writes the canary's mp4 files (MPEG-4 Part 2, `mp4v`: the
pip wheel has no H.264 encoder).

Sampling rules (`frame_indices`), as recorded in every Video-MME report:
    uniform   `num_frames` indices spread evenly over the whole video, first and last frame included: lmms-eval's
              and TensorRT-LLM's `np.linspace(0, total - 1, num_frames, dtype=int)`, except that a video with
              fewer frames than asked gives each frame once instead of repeating some;
    fps       one frame every 1/`fps` seconds from the start, then `uniform` over those if more than `num_frames`
              (qwen-vl-utils' rule, without its rounding to an even count).
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, unknown_choice

SAMPLING_RULES = ("uniform", "fps")


@dataclass(frozen=True)
class Sampling:
    """How frames are chosen and sized; `record()` goes into the report."""

    rule: str = "uniform"
    num_frames: int = 8
    fps: float = 1.0  # the `fps` rule's rate
    max_pixels: int | None = None  # frames larger than this (width x height) are scaled down, aspect kept

    def __post_init__(self):
        if self.rule not in SAMPLING_RULES:
            raise unknown_choice("video sampling rule", self.rule, SAMPLING_RULES, where="video_mme.sampling")
        if self.num_frames < 1:
            raise ConfigError(f"video_mme.num_frames: {self.num_frames} (must be at least 1)")

    def record(self) -> dict:
        return {"rule": self.rule, "num_frames": self.num_frames, "fps": self.fps, "max_pixels": self.max_pixels}


def frame_indices(total: int, video_fps: float, sampling: Sampling) -> list[int]:
    """The frame numbers `sampling` picks from a video of `total` frames at `video_fps`."""
    import numpy as np

    if total < 1:
        return []
    if sampling.rule == "fps":
        step = max(video_fps, 1e-9) / sampling.fps
        count = math.ceil(total / step - 1e-9)  # the times k / fps that fall inside the video
        candidates = sorted({min(total - 1, round(k * step)) for k in range(count)})
    else:
        candidates = list(range(total))
    if len(candidates) <= sampling.num_frames:
        return candidates
    picks = np.linspace(0, len(candidates) - 1, sampling.num_frames, dtype=int)
    return [candidates[i] for i in picks]


@dataclass(frozen=True)
class Frames:
    """What was sent: the frames (PIL RGB), their numbers in the file, and the file's frame count and fps."""

    images: list
    indices: list[int]
    total: int
    fps: float

    def digest(self) -> str:
        """sha256 over the frames' raw pixels in order: equal digests, equal frames."""
        h = hashlib.sha256()
        for image in self.images:
            h.update(f"{image.size}".encode())
            h.update(image.tobytes())
        return h.hexdigest()


def video_info(path: str | Path) -> tuple[int, float]:
    """(frame count, fps) of a video file; ConfigError naming the file when it cannot be opened."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ConfigError(f"{path}: not a readable video (OpenCV could not open it)")
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()


def read_frames(path: str | Path, sampling: Sampling) -> Frames:
    """Decode the frames `sampling` picks, as RGB PIL images scaled under `max_pixels`. The file is read through
    in order (`grab`, then `retrieve` only for picked frames) rather than by seeking, whose accuracy depends on the
    container and the OpenCV build; a long video costs one pass."""
    import cv2
    from PIL import Image

    total, fps = video_info(path)
    wanted = frame_indices(total, fps, sampling)
    capture, images, found = cv2.VideoCapture(str(path)), [], []
    try:
        index, targets = 0, set(wanted)
        while len(found) < len(wanted):
            if not capture.grab():
                break
            if index in targets:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                images.append(
                    limit_pixels(Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)), sampling.max_pixels)
                )
                found.append(index)
            index += 1
    finally:
        capture.release()
    if not found:
        raise ConfigError(f"{path}: no frame could be decoded ({total} frames reported)")
    return Frames(images, found, total, fps)


def limit_pixels(image, max_pixels: int | None):
    """`image` scaled down (bicubic, aspect kept) so width x height <= max_pixels; unchanged when it fits."""
    width, height = image.size
    if not max_pixels or width * height <= max_pixels:
        return image
    scale = (max_pixels / (width * height)) ** 0.5
    return image.resize((max(1, int(width * scale)), max(1, int(height * scale))), resample=3)


def video_data_url(path: str | Path) -> str:
    return "data:video/mp4;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def write_mp4(path: str | Path, frames, fps: float) -> None:
    """Write RGB frames (PIL images or HxWx3 uint8 arrays, all one size) as an MPEG-4 Part 2 mp4."""
    import cv2
    import numpy as np

    arrays = [np.asarray(f.convert("RGB") if hasattr(f, "convert") else f, dtype=np.uint8) for f in frames]
    height, width = arrays[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV could not open an mp4v writer")
    try:
        for array in arrays:
            writer.write(cv2.cvtColor(array, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
