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
  of pads (the HF processor would expand each pad again) and a `<|video_pad|>` (no video here).
- Cache keys: SGLang puts a pad value derived from the image's content hash at the image's token positions
  (`pad_value = hash % 2**30`), so the radix tree tells images apart. Here every token of image k is keyed as
  `-(1 + hash_k % 2**62)`: negative, so it can never equal a token id. The hash is taken over the processed
  patches and the grid, as SGLang hashes the processed feature tensor.
- Chat: `image_url` parts become `{"type": "image"}` for the template and their URL joins the request's images in
  order (SGLang's OpenAI content format). Video and audio parts are a 400 naming the part.
- `image_tokens` is the number of image tokens (expanded pads), reported only when > 0 as SGLang does.
- `--limit-mm-data-per-request '{"image": N}'` refuses more than N images, in SGLang's words.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from harness.engines.hf.protocol import RequestError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
IMAGE_PART_TYPES = ("image_url", "input_image")
REFUSED_PART_TYPES = ("video_url", "video", "audio_url", "input_audio", "audio")
KEY_SPACE = 1 << 62
# Fault injection for the harness's own tests (tests/test_mm_suites.py): HARNESS_HF_FAULT=text-keyed-mm-cache makes
# the prefix cache key image tokens by the placeholder id alone, the bug mm_prefix_cache exists to catch.
FAULT_ENV = "HARNESS_HF_FAULT"
TEXT_KEYED_CACHE = "text-keyed-mm-cache"


@dataclass(frozen=True)
class ImageRef:
    """One image of a request as sent, and the key path errors about it name."""

    value: Any
    where: str


@dataclass
class MultimodalPrompt:
    """A prompt with its images expanded: what the worker needs to prefill it."""

    input_ids: list[int]  # placeholders expanded to each image's tokens
    cache_key: list[int]  # input_ids with image tokens replaced by their image's content key
    spans: list[tuple[int, int]]  # [start, end) of each image's tokens in input_ids
    pixel_values: Any  # torch [patches, patch_dim], all images, in order
    image_grid_thw: Any  # torch long [images, 3]
    patch_counts: list[int]
    keys: list[int]
    positions: Any = field(default=None, repr=False)  # the worker's 3D rope positions [3, 1, len], on first use
    rope_delta: int = 0

    @property
    def image_tokens(self) -> int:
        return sum(end - start for start, end in self.spans)


# -- image_data -------------------------------------------------------------------------------------------


def image_refs_per_prompt(raw: Any, n_prompts: int, batched: bool) -> list[list[ImageRef]]:
    """`image_data` as SGLang's GenerateReqInput normalises it: the images of each prompt."""
    if raw is None or raw == []:
        return [[] for _ in range(n_prompts)]
    if not batched:
        items = raw if isinstance(raw, list) else [raw]
        wheres = [f"image_data[{j}]" for j in range(len(items))] if isinstance(raw, list) else ["image_data"]
        return [[_ref(item, where) for item, where in zip(items, wheres)]]
    if not isinstance(raw, list):
        return [[_ref(raw, "image_data")] for _ in range(n_prompts)]
    if len(raw) != n_prompts:
        raise RequestError(f"image_data: The length of image_data should be equal to the batch size ({n_prompts}), "
                           f"got {len(raw)}.")  # fmt: skip
    per_prompt = []
    nested = isinstance(raw[0], list)
    for i, entry in enumerate(raw):
        if entry is None or entry == [None]:
            per_prompt.append([])
        elif nested:
            if not isinstance(entry, list):
                kind = type(entry).__name__
                raise RequestError(f"image_data[{i}]: a batch's image_data is a list of lists here, got {kind}")
            per_prompt.append([_ref(item, f"image_data[{i}][{j}]") for j, item in enumerate(entry)])
        else:
            per_prompt.append([_ref(entry, f"image_data[{i}]")])
    return per_prompt


def _ref(item: Any, where: str) -> ImageRef:
    if isinstance(item, ImageRef):
        return item
    if isinstance(item, dict):
        if not isinstance(item.get("url"), str):
            raise RequestError(f"{where}.url: an image object needs a string url, got {item.get('url')!r}")
        return ImageRef(item["url"], f"{where}.url")
    if not isinstance(item, str) or not item:
        raise RequestError(f"{where}: expected a data URL, file:// URL, local path or base64 string, got {_brief(item)}")
    return ImageRef(item, where)


def load_image(ref: ImageRef):
    """The RGB PIL image behind `ref` (SGLang's `load_image` order: http, file://, path, data URL, base64)."""
    from PIL import Image

    data = _image_bytes(ref)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # PIL raises many types for a bad file; all mean "not an image"
        raise RequestError(f"{ref.where}: cannot read the image ({type(exc).__name__}: {exc})") from None
    return image.convert("RGB")  # SGLang discards the alpha channel


def _image_bytes(ref: ImageRef) -> bytes:
    url = ref.value
    if url.startswith(("http://", "https://")):
        raise RequestError(f"{ref.where}: {_brief(url)}: the HF reference engine has no network access; "
                           "send the image as a data URL, a file:// URL, a local path or base64")  # fmt: skip
    if url.startswith("data:"):
        header, comma, payload = url.partition(",")
        if not comma or ";base64" not in header:
            raise RequestError(f"{ref.where}: a data URL must be data:<mime>;base64,<data>, got {_brief(url)}")
        return _b64(payload, ref)
    if url.startswith("file://"):
        return _read(unquote(urlparse(url).path), ref)
    if url.lower().endswith(IMAGE_EXTENSIONS) or (len(url) < 4096 and os.path.isfile(url)):
        return _read(url, ref)
    return _b64(url, ref)


def _read(path: str, ref: ImageRef) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise RequestError(f"{ref.where}: cannot open image file {path!r} ({exc.strerror or exc})") from None


def _b64(payload: str, ref: ImageRef) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{ref.where}: neither a data URL, a file:// URL, an existing path nor valid base64: "
                           f"{_brief(payload)}") from None  # fmt: skip


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- chat content -----------------------------------------------------------------------------------------


def split_chat_images(messages: list[dict]) -> tuple[list[dict], list[ImageRef]]:
    """Messages for the chat template (image parts as `{"type": "image"}`) and their images in order."""
    out, refs = [], []
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            out.append(message)
            continue
        parts = []
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in IMAGE_PART_TYPES:
                image = part.get("image_url") or {}
                url = image if isinstance(image, str) else image.get("url") if isinstance(image, dict) else None
                url_where = f"{where}.image_url" + ("" if isinstance(image, str) else ".url")
                if not isinstance(url, str) or not url:
                    raise RequestError(f"{url_where}: an image part needs a URL string, got {_brief(url)}")
                refs.append(ImageRef(url, url_where))
                parts.append({"type": "image"})
            elif kind in REFUSED_PART_TYPES:
                raise RequestError(f"{where}.type: {kind!r} parts are not supported by the HF reference engine (images only)")
            else:
                parts.append(part)
        out.append({**message, "content": parts})
    return out, refs


# -- placeholders, pixels, keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VisionTokens:
    image_pad: int
    video_pad: int | None


class ImagePreparer:
    """Turns a prompt's ids and image refs into a `MultimodalPrompt` (on the asyncio side, before queueing)."""

    def __init__(self, image_processor, tokens: VisionTokens, image_limit: int | None = None):
        self.image_processor = image_processor
        self.tokens = tokens
        self.merge = int(getattr(image_processor, "merge_size", 2))
        self.image_limit = image_limit

    refs_per_prompt = staticmethod(image_refs_per_prompt)

    def prepare(self, ids: list[int], refs: list[ImageRef], where: str) -> MultimodalPrompt | None:
        """None for a prompt without images (its ids are then used as they are)."""
        pads = [pos for pos, token in enumerate(ids) if token == self.tokens.image_pad]
        self._check_placeholders(ids, pads, len(refs), where)
        if not refs:
            return None
        if self.image_limit is not None and len(refs) > self.image_limit:
            raise RequestError(f"{refs[0].where.split('[')[0]}: Image count {len(refs)} exceeds limit "
                               f"{self.image_limit} per request (--limit-mm-data-per-request).")  # fmt: skip
        images = [load_image(ref) for ref in refs]
        try:
            processed = self.image_processor(images=images, return_tensors="pt")
        except Exception as exc:  # a decodable image the processor still rejects (e.g. 1x1 pixels)
            raise RequestError(f"{refs[0].where}: the image processor failed: {type(exc).__name__}: {exc}") from None
        grid = processed["image_grid_thw"]
        patch_counts = [int(n) for n in grid.prod(-1).tolist()]
        pixels = processed["pixel_values"]
        keys = _content_keys(pixels, grid, patch_counts)
        if os.environ.get(FAULT_ENV) == TEXT_KEYED_CACHE:  # injected bug: every image keys alike, as plain pad ids
            keys = [self.tokens.image_pad] * len(keys)
        expanded, cache_key, spans, previous = [], [], [], 0
        for pad, count, key in zip(pads, patch_counts, keys):
            expanded += ids[previous:pad]
            cache_key += ids[previous:pad]
            n_tokens = count // self.merge**2
            spans.append((len(expanded), len(expanded) + n_tokens))
            expanded += [self.tokens.image_pad] * n_tokens
            cache_key += [key] * n_tokens
            previous = pad + 1
        expanded += ids[previous:]
        cache_key += ids[previous:]
        return MultimodalPrompt(expanded, cache_key, spans, pixels, grid, patch_counts, keys)

    def _check_placeholders(self, ids: list[int], pads: list[int], n_images: int, where: str) -> None:
        if self.tokens.video_pad is not None and self.tokens.video_pad in ids:
            raise RequestError(f"{where}: the prompt holds a <|video_pad|> token; videos are not supported by the "
                               "HF reference engine")  # fmt: skip
        if any(b == a + 1 for a, b in zip(pads, pads[1:])):
            raise RequestError(f"{where}: the prompt holds a run of <|image_pad|> tokens; give one "
                               "<|vision_start|><|image_pad|><|vision_end|> per image (the engine expands it)")  # fmt: skip
        if len(pads) != n_images:
            raise RequestError(f"{where}: the prompt has {len(pads)} image placeholder(s) (<|vision_start|>"
                               f"<|image_pad|><|vision_end|>) but the request has {n_images} image(s)")  # fmt: skip


def _content_keys(pixels, grid, patch_counts: list[int]) -> list[int]:
    keys, row = [], 0
    for k, count in enumerate(patch_counts):
        digest = hashlib.sha256()
        digest.update(pixels[row : row + count].contiguous().numpy().tobytes())
        digest.update(grid[k].numpy().tobytes())
        keys.append(-(1 + int.from_bytes(digest.digest()[:8], "big") % KEY_SPACE))
        row += count
    return keys
