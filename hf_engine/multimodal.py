"""Images in requests to the HF reference engine: read them, expand their placeholders, key them for the cache.

What SGLang 0.5.17 does, and where this engine follows it (python/sglang/srt/managers/io_struct.py
`GenerateReqInput._normalize_image_data`, managers/tokenizer_manager.py, multimodal/processors/base_processor.py
`load_mm_data`, multimodal/processors/qwen_vl.py, utils/common.py `load_image`, parser/jinja_template_utils.py
`process_content_for_template_format`, managers/schedule_batch.py `compute_mm_token_counts`):

- `image_data` of a single prompt is one item or a list of items (that prompt's images); of a batch, one item
  (every prompt gets it), a flat list (one image per prompt, None for none) or a list of lists (the images of each
  prompt). An item is a data URL, a `file://` URL, a local path or a bare base64 string, or `{"url": ...}`
  (SGLang's ImageData). http(s) URLs are a 400 here: this engine has no network.
- The prompt (`text`, or `input_ids`, which SGLang decodes back to text before its processor sees it) holds one
  `<|vision_start|><|image_pad|><|vision_end|>` per image, as the chat template renders it; the single
  `<|image_pad|>` of image k is expanded into image k's tokens (grid t*h*w / merge_size**2), in order. SGLang
  sends a placeholder/image count mismatch to a legacy path; here it is a 400, and so is an already-expanded run
  of pads (the HF processor would expand each pad again).
- Videos (`video_data`, chat `video_url` parts; `hf_video_input` says how they are decoded, sampled and laid out):
  the `<|video_pad|>` of the k-th `<|vision_start|><|video_pad|><|vision_end|>` is video k, replaced per temporal
  patch by its timestamp and its frame tokens in their own vision markers; the outer markers stay, as SGLang's
  `build_input_ids_with_timestamps` and transformers 5.23's processor both leave them. Each temporal patch is one
  vision item of the prompt.
- Cache keys: SGLang puts a pad value derived from the image's content hash at the image's token positions
  (`pad_value = hash % 2**30`), so the radix tree tells images apart. Here every token of image k is keyed as
  `-(1 + hash_k % 2**62)`: negative, so it can never equal a token id. The hash is taken over the processed
  patches and the grid, as SGLang hashes the processed feature tensor.
- Chat: `image_url` parts become `{"type": "image"}` for the template and their URL joins the request's images in
  order (SGLang's OpenAI content format); `video_url` parts become `{"type": "video"}` and join its videos. Audio
  parts are a 400 naming the part.
- `image_tokens` is the number of image tokens (expanded pads), reported only when > 0 as SGLang does.
- `--limit-mm-data-per-request '{"image": N}'` refuses more than N images, in SGLang's words.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from hf_engine.errors import RequestError
from hf_engine.image_refs import ImageRef, decode_base64, image_refs_per_prompt, load_image

IMAGE, VIDEO = 1, 2  # token types of Qwen-VL's rope index (0 is text)
KEY_SPACE = 1 << 62
# Fault injection for the harness's own tests (tests/test_mm_suites.py): HARNESS_HF_FAULT=text-keyed-mm-cache makes
# the prefix cache key image tokens by the placeholder id alone, the bug mm_prefix_cache exists to catch.
FAULT_ENV = "HARNESS_HF_FAULT"
TEXT_KEYED_CACHE = "text-keyed-mm-cache"


@dataclass
class MultimodalPrompt:
    """A prompt with its images and videos expanded: what the worker needs to prefill it. A vision item is an
    image or one temporal patch of a video, in prompt order."""

    input_ids: list[int]  # placeholders expanded to each item's tokens
    cache_key: list[int]  # input_ids with item tokens replaced by their item's content key
    spans: list[tuple[int, int]]  # [start, end) of each item's tokens in input_ids
    pixel_values: Any  # torch [patches, patch_dim], all items, in order
    image_grid_thw: Any  # torch long [items, 3]
    patch_counts: list[int]
    keys: list[int]
    kinds: list[int] = field(default_factory=list)  # IMAGE or VIDEO per item (empty: all images)
    videos: list[dict] = field(default_factory=list)  # per video: what the engine sampled (for its log and tests)
    positions: Any = field(default=None, repr=False)  # the worker's 3D rope positions [3, 1, len], on first use
    rope_delta: int = 0

    def item_kinds(self) -> list[int]:
        return self.kinds or [IMAGE] * len(self.spans)

    @property
    def image_tokens(self) -> int:
        return sum(end - start for (start, end), kind in zip(self.spans, self.item_kinds()) if kind == IMAGE)

    @property
    def video_tokens(self) -> int:
        return sum(end - start for (start, end), kind in zip(self.spans, self.item_kinds()) if kind == VIDEO)


# -- placeholders, pixels, keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VisionTokens:
    image_pad: int
    video_pad: int | None
    vision_start: int | None = None
    vision_end: int | None = None


@dataclass
class _Item:
    """One vision item on its way into the prompt: where its placeholder was, its tokens and patch rows."""

    placeholder: tuple[int, int]  # [start, end) of the ids it replaces
    prefix: list[int]  # text tokens before its pads (a video group's timestamp; vision markers)
    suffix: list[int]
    pixels: Any
    grid: tuple[int, int, int]
    kind: int


class ImagePreparer:
    """Turns a prompt's ids and its image and video refs into a `MultimodalPrompt` (on the asyncio side, before
    queueing). `video_processor` and `encode` (text → ids) are needed for videos only."""

    def __init__(
        self, image_processor, tokens: VisionTokens, image_limit: int | None = None, video_processor=None, encode=None
    ):
        self.image_processor = image_processor
        self.video_processor = video_processor
        self.encode = encode
        self.tokens = tokens
        self.merge = int(getattr(image_processor, "merge_size", 2))
        self.image_limit = image_limit

    refs_per_prompt = staticmethod(image_refs_per_prompt)

    @staticmethod
    def video_refs_per_prompt(raw: Any, n_prompts: int, batched: bool) -> list[list[ImageRef]]:
        """`video_data` normalised as `image_data` is (SGLang's GenerateReqInput treats them alike)."""
        return image_refs_per_prompt(raw, n_prompts, batched, field="video_data")

    def prepare(
        self, ids: list[int], refs: list[ImageRef], where: str, video_refs: list[ImageRef] = ()
    ) -> MultimodalPrompt | None:
        """None for a prompt without images or videos (its ids are then used as they are)."""
        pads = [pos for pos, token in enumerate(ids) if token == self.tokens.image_pad]
        video_pads = [pos for pos, token in enumerate(ids) if token == self.tokens.video_pad]
        self._check_placeholders(ids, pads, len(refs), where)
        self._check_video_placeholders(ids, video_pads, video_refs, where)
        if not refs and not video_refs:
            return None
        if self.image_limit is not None and len(refs) > self.image_limit:
            raise RequestError(
                f"{refs[0].where.split('[')[0]}: Image count {len(refs)} exceeds limit "
                f"{self.image_limit} per request (--limit-mm-data-per-request)."
            )
        items, videos = self._image_items(refs, pads), []
        for pad, ref in zip(video_pads, video_refs):
            video_items, sampled = self._video_items(ref, pad)
            items += video_items
            videos.append(sampled)
        return self._lay_out(ids, sorted(items, key=lambda item: item.placeholder[0]), videos)

    def _image_items(self, refs: list[ImageRef], pads: list[int]) -> list[_Item]:
        if not refs:
            return []
        images = [load_image(ref) for ref in refs]
        try:
            processed = self.image_processor(images=images, return_tensors="pt")
        except Exception as exc:  # a decodable image the processor still rejects (e.g. 1x1 pixels)
            raise RequestError(f"{refs[0].where}: the image processor failed: {type(exc).__name__}: {exc}") from None
        grid, rows, items = processed["image_grid_thw"], 0, []
        for pad, thw in zip(pads, grid.tolist()):
            count = thw[0] * thw[1] * thw[2]
            items.append(
                _Item((pad, pad + 1), [], [], processed["pixel_values"][rows : rows + count], tuple(thw), IMAGE)
            )
            rows += count
        return items

    def _video_items(self, ref: ImageRef, pad: int) -> tuple[list[_Item], dict]:
        from hf_engine.video_input import VideoFile, process_video

        if self.video_processor is None:
            raise RequestError(f"{ref.where}: this model has no video processor")
        with VideoFile(ref.value, ref.where, lambda payload: decode_base64(payload, ref)) as path:
            video = process_video(self.video_processor, path, ref.where)
        _groups, h, w = video.grid
        items, per_group = [], h * w
        for g, seconds in enumerate(video.timestamps):
            first = (pad, pad + 1) if g == 0 else (pad + 1, pad + 1)  # the first group replaces the pad token
            stamp = self.encode(f"<{seconds:.1f} seconds>")
            items.append(
                _Item(
                    first,
                    stamp + [self.tokens.vision_start],
                    [self.tokens.vision_end],
                    video.pixel_values[g * per_group : (g + 1) * per_group],
                    (1, h, w),
                    VIDEO,
                )
            )
        sampled = {
            "where": ref.where,
            "frame_indices": video.frame_indices,
            "total_frames": video.total_frames,
            "fps": video.fps,
            "grid": list(video.grid),
            "timestamps": video.timestamps,
        }
        return items, sampled

    def _lay_out(self, ids: list[int], items: list[_Item], videos: list[dict]) -> MultimodalPrompt:
        import torch

        grid = torch.tensor([item.grid for item in items], dtype=torch.long)
        patch_counts = [int(n) for n in grid.prod(-1).tolist()]
        pixels = torch.cat([item.pixels for item in items])
        keys = _content_keys(pixels, grid, patch_counts)
        if os.environ.get(FAULT_ENV) == TEXT_KEYED_CACHE:  # injected bug: every item keys alike, as plain pad ids
            keys = [self.tokens.image_pad] * len(keys)
        expanded, cache_key, spans, previous = [], [], [], 0
        for item, count, key in zip(items, patch_counts, keys):
            start, end = item.placeholder
            text = ids[previous:start] + item.prefix
            expanded += text
            cache_key += text
            n_tokens = count // self.merge**2
            pad = self.tokens.image_pad if item.kind == IMAGE else self.tokens.video_pad
            spans.append((len(expanded), len(expanded) + n_tokens))
            expanded += [pad] * n_tokens + item.suffix
            cache_key += [key] * n_tokens + item.suffix
            previous = max(previous, end)
        expanded += ids[previous:]
        cache_key += ids[previous:]
        return MultimodalPrompt(
            expanded, cache_key, spans, pixels, grid, patch_counts, keys, [item.kind for item in items], videos
        )

    def _check_placeholders(self, ids: list[int], pads: list[int], n_images: int, where: str) -> None:
        if any(b == a + 1 for a, b in zip(pads, pads[1:])):
            raise RequestError(
                f"{where}: the prompt holds a run of <|image_pad|> tokens; give one "
                "<|vision_start|><|image_pad|><|vision_end|> per image (the engine expands it)"
            )
        if len(pads) != n_images:
            raise RequestError(
                f"{where}: the prompt has {len(pads)} image placeholder(s) (<|vision_start|>"
                f"<|image_pad|><|vision_end|>) but the request has {n_images} image(s)"
            )

    def _check_video_placeholders(self, ids: list[int], pads: list[int], refs, where: str) -> None:
        if any(b == a + 1 for a, b in zip(pads, pads[1:])):
            raise RequestError(
                f"{where}: the prompt holds a run of <|video_pad|> tokens; give one "
                "<|vision_start|><|video_pad|><|vision_end|> per video (the engine expands it)"
            )
        if len(pads) != len(refs):
            raise RequestError(
                f"{where}: the prompt has {len(pads)} video placeholder(s) (<|vision_start|>"
                f"<|video_pad|><|vision_end|>) but the request has {len(refs)} video(s)"
            )


def _content_keys(pixels, grid, patch_counts: list[int]) -> list[int]:
    keys, row = [], 0
    for k, count in enumerate(patch_counts):
        digest = hashlib.sha256()
        digest.update(pixels[row : row + count].contiguous().numpy().tobytes())
        digest.update(grid[k].numpy().tobytes())
        keys.append(-(1 + int.from_bytes(digest.digest()[:8], "big") % KEY_SPACE))
        row += count
    return keys
