"""Videos in requests to the HF reference engine: decode, sample with the model's own rule, patchify, lay out.

Decoding: OpenCV (`harness.evals.video`), the library the harness's client uses for `frames` mode, so the two delivery
modes differ only in who samples and how frames become tokens. A video arrives as a data URL, a `file://` URL
or a local path (`video_url` chat parts, `/generate` `video_data`).

Sampling and patches: the checkpoint's own video processor (`video_preprocessor_config.json`; Qwen3-VL: 2 fps,
at least 4 and at most 768 frames, `np.linspace` over the file's frames), run by transformers' code. On this
project's CPU machine transformers' video processors cannot run as shipped: they resize and normalise through
torchvision, and PyPI's torchvision does not import beside the pinned CPU torch. `torch_only_video_processor`
subclasses the checkpoint's class and replaces only those three torchvision calls with the torch operations
torchvision itself performs (bicubic antialiased `interpolate`, on uint8 frames torch's native uint8 kernel as
torchvision uses on the CPU; `(x - mean) / std`; grey → RGB); sampling, `smart_resize`, patchify and the grid stay
transformers'. Where torchvision imports (the
GPU image) the checkpoint's class runs unchanged, and `tests/test_hf_video.py` compares the two there.

Layout (Qwen3-VL, `Qwen3VLProcessor.replace_video_token`, SGLang's `build_input_ids_with_timestamps`): the
`<|video_pad|>` of the chat template's `<|vision_start|><|video_pad|><|vision_end|>` becomes, per temporal patch
g (2 sampled frames), `<t_g seconds><|vision_start|>` + `<|video_pad|>` x (h*w / merge**2) + `<|vision_end|>`,
where t_g is the mean time of the group's first and last frame; the outer markers stay. Each group is one vision item
of grid (1, h, w): Qwen3-VL's vision
tower attends within a temporal patch only, and its rope index splits a video's grid the same way, so a video's
features equal those of its groups run as images (checked in tests/test_hf_video.py).

SGLang 0.5.17 samples `video_url` with its own copy of qwen-vl-utils' rule (`qwen_vl.py` `smart_nframes`,
`preprocess_video`): also 2 fps and 4..768 frames, but the count floored to a multiple of 2, the indices
*truncated* from `np.linspace` (qwen-vl-utils and transformers round them: 8 frames at 4 fps give [0, 2, 4, 7]
there, [0, 2, 5, 7] here), and every frame first resized bilinearly to at least 128*28*28 pixels whatever the
checkpoint's `video_preprocessor_config.json` says (an 84 px canary frame becomes 320 px: 100 tokens per
temporal patch there, 9 here). This engine follows the checkpoint's own processor; `video_mme_parity` in
`video_url` mode measures what the difference does to answers.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from hf_engine.errors import RequestError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")


def torch_only_video_processor(video_processor_class):
    """`video_processor_class` with its torchvision calls replaced by the torch operations they perform."""
    import torch
    import torch.nn.functional as F

    class TorchOnlyVideoProcessor(video_processor_class):
        def convert_to_rgb(self, video):
            # torchvision's grayscale_to_rgb: repeat one channel three times; RGB passes through
            return video.repeat_interleave(3, dim=-3) if video.shape[-3] == 1 else video[..., :3, :, :]

        def normalize(self, image, mean, std, inplace=False):
            mean = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
            std = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
            return image.sub_(mean).div_(std) if inplace else (image - mean) / std

        def resize(self, videos, size, resample=None, factor=None, temporal_factor=None, **kwargs):
            target = _target_size(self, videos, size, factor, temporal_factor, kwargs.get("cap_pixels_per_frame"))
            if tuple(videos.shape[-2:]) == target:
                return videos  # torchvision's resize returns the input unchanged when the size already matches
            dtype, shape = videos.dtype, videos.shape
            flat = videos.reshape(-1, *shape[-3:])
            if dtype == torch.uint8 and flat.device.type == "cpu":
                # torchvision hands uint8 bicubic on the CPU to torch's native uint8 kernel (it rounds and clamps
                # between its two passes: 20 levels away from a float resize on noise), so this does too
                out = F.interpolate(flat, size=target, mode="bicubic", align_corners=False, antialias=True)
            else:
                out = F.interpolate(
                    flat.to(torch.float32), size=target, mode="bicubic", align_corners=False, antialias=True
                )
                out = out.clamp_(0, 255).round_().to(dtype) if dtype == torch.uint8 else out.to(dtype)
            return out.reshape(*shape[:-2], *target)

    TorchOnlyVideoProcessor.__name__ = f"TorchOnly{video_processor_class.__name__}"
    return TorchOnlyVideoProcessor


def _target_size(processor, videos, size, factor, temporal_factor, cap_pixels_per_frame) -> tuple[int, int]:
    """The (height, width) the processor's own resize would ask torchvision for."""
    import sys

    # the module of the checkpoint's class (Qwen3-VL's), whose resize this mirrors
    smart_resize = sys.modules[type(processor).__mro__[1].__module__].smart_resize
    num_frames, (height, width) = videos.shape[1], videos.shape[-2:]
    max_pixels = size.longest_edge
    if cap_pixels_per_frame:  # transformers' Qwen3VLVideoProcessor.resize, same formula
        frame_cap = processor.max_video_tokens * factor * factor
        max_pixels = max(min(frame_cap, size.longest_edge // num_frames), int(size.shortest_edge * 1.05)) * num_frames
    return tuple(
        smart_resize(
            num_frames=num_frames,
            height=height,
            width=width,
            factor=factor,
            temporal_factor=temporal_factor,
            min_pixels=size.shortest_edge,
            max_pixels=max_pixels,
        )
    )


@dataclass
class ProcessedVideo:
    """One video as the model sees it: patch rows per temporal group, the groups' grid, their timestamps."""

    pixel_values: object  # torch [groups * h * w, patch_dim]
    grid: tuple[int, int, int]  # (groups, h, w) in patches
    timestamps: list[float]  # seconds, one per group
    frame_indices: list[int]  # the sampled frames' numbers in the file
    total_frames: int
    fps: float


def group_timestamps(indices: list[int], fps: float, temporal_patch_size: int) -> list[float]:
    """Qwen3-VL's timestamp of each temporal patch: the mean of its first and last frame's time (the last frame
    repeated to fill the final patch), as `Qwen3VLProcessor._calculate_timestamps`."""
    indices = list(indices)
    while len(indices) % temporal_patch_size:
        indices.append(indices[-1])
    times = [i / fps for i in indices]
    return [(times[i] + times[i + temporal_patch_size - 1]) / 2 for i in range(0, len(times), temporal_patch_size)]


def process_video(video_processor, path: str, where: str) -> ProcessedVideo:
    """Decode every frame of `path` (OpenCV), let the model's video processor sample and patchify them."""
    import numpy as np
    from transformers.video_utils import VideoMetadata

    frames, fps = _decode_all(path, where)
    metadata = VideoMetadata(total_num_frames=len(frames), fps=fps, height=frames.shape[1], width=frames.shape[2])
    try:
        out = video_processor(
            videos=[frames], video_metadata=[metadata], do_sample_frames=True, return_metadata=True, return_tensors="pt"
        )
    except Exception as exc:  # a decodable video the processor still rejects (too few or too small frames)
        raise RequestError(f"{where}: the video processor failed: {type(exc).__name__}: {exc}") from None
    grid = tuple(int(n) for n in out["video_grid_thw"][0].tolist())
    indices = [int(i) for i in np.asarray(out["video_metadata"][0].frames_indices).tolist()]
    timestamps = group_timestamps(indices, fps, int(video_processor.temporal_patch_size))
    return ProcessedVideo(out["pixel_values_videos"], grid, timestamps, indices, len(frames), fps)


def _decode_all(path: str, where: str):
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise RequestError(f"{where}: not a readable video (OpenCV could not open it)")
        fps, frames = float(capture.get(cv2.CAP_PROP_FPS) or 0.0), []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise RequestError(f"{where}: no frame could be decoded")
    return np.stack(frames), fps or 24.0  # transformers' own fallback when a file reports no fps


class VideoFile:
    """A request's video as a file OpenCV can open: the path itself, or a temporary copy of a data URL's bytes
    (removed on exit)."""

    def __init__(self, url: str, where: str, decode_base64):
        self.url, self.where, self.decode_base64 = url, where, decode_base64
        self.temporary: str | None = None

    def __enter__(self) -> str:
        url = self.url
        if url.startswith(("http://", "https://")):
            raise RequestError(
                f"{self.where}: the HF reference engine has no network access; send the video as a "
                "data URL, a file:// URL or a local path"
            )
        if url.startswith("file://"):
            url = unquote(urlparse(url).path)
        if not url.startswith("data:") and (url.lower().endswith(VIDEO_EXTENSIONS) or os.path.isfile(url)):
            if not os.path.isfile(url):
                raise RequestError(f"{self.where}: no such video file {url!r}")
            return url
        data = self.decode_base64(url.partition(",")[2] if url.startswith("data:") else url)
        handle, self.temporary = tempfile.mkstemp(suffix=".mp4", prefix="hf-video-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        return self.temporary

    def __exit__(self, *exc) -> None:
        if self.temporary:
            os.unlink(self.temporary)
