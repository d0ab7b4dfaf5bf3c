"""Images and videos as a request names them: `image_data` / `video_data` items of the native API and the
`image_url` / `video_url` parts of chat messages, read from files, data URLs or base64, each error naming its key
path (the pixels and placeholders are multimodal.py's)."""

from __future__ import annotations

import base64
import binascii
import io
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from hf_engine.errors import RequestError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
IMAGE_PART_TYPES = ("image_url", "input_image")
VIDEO_PART_TYPES = ("video_url",)
REFUSED_PART_TYPES = ("video", "audio_url", "input_audio", "audio")


@dataclass(frozen=True)
class ImageRef:
    """One image of a request as sent, and the key path errors about it name."""

    value: Any
    where: str


# -- image_data -------------------------------------------------------------------------------------------


def image_refs_per_prompt(raw: Any, n_prompts: int, batched: bool, field: str = "image_data") -> list[list[ImageRef]]:
    """`image_data` (or `video_data`, alike) as SGLang's GenerateReqInput normalises it: the items of each prompt."""
    if raw is None or raw == []:
        return [[] for _ in range(n_prompts)]
    if not batched:
        items = raw if isinstance(raw, list) else [raw]
        wheres = [f"{field}[{j}]" for j in range(len(items))] if isinstance(raw, list) else [field]
        return [[_ref(item, where) for item, where in zip(items, wheres)]]
    if not isinstance(raw, list):
        return [[_ref(raw, field)] for _ in range(n_prompts)]
    if len(raw) != n_prompts:
        raise RequestError(
            f"{field}: The length of {field} should be equal to the batch size ({n_prompts}), got {len(raw)}."
        )
    per_prompt = []
    nested = isinstance(raw[0], list)
    for i, entry in enumerate(raw):
        if entry is None or entry == [None]:
            per_prompt.append([])
        elif nested:
            if not isinstance(entry, list):
                kind = type(entry).__name__
                raise RequestError(f"{field}[{i}]: a batch's {field} is a list of lists here, got {kind}")
            per_prompt.append([_ref(item, f"{field}[{i}][{j}]") for j, item in enumerate(entry)])
        else:
            per_prompt.append([_ref(entry, f"{field}[{i}]")])
    return per_prompt


def _ref(item: Any, where: str) -> ImageRef:
    if isinstance(item, ImageRef):
        return item
    if isinstance(item, dict):
        if not isinstance(item.get("url"), str):
            raise RequestError(f"{where}.url: an image object needs a string url, got {item.get('url')!r}")
        return ImageRef(item["url"], f"{where}.url")
    if not isinstance(item, str) or not item:
        raise RequestError(
            f"{where}: expected a data URL, file:// URL, local path or base64 string, got {_brief(item)}"
        )
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
        raise RequestError(
            f"{ref.where}: {_brief(url)}: the HF reference engine has no network access; "
            "send the image as a data URL, a file:// URL, a local path or base64"
        )
    if url.startswith("data:"):
        header, comma, payload = url.partition(",")
        if not comma or ";base64" not in header:
            raise RequestError(f"{ref.where}: a data URL must be data:<mime>;base64,<data>, got {_brief(url)}")
        return decode_base64(payload, ref)
    if url.startswith("file://"):
        return _read(unquote(urlparse(url).path), ref)
    if url.lower().endswith(IMAGE_EXTENSIONS) or (len(url) < 4096 and os.path.isfile(url)):
        return _read(url, ref)
    return decode_base64(url, ref)


def _read(path: str, ref: ImageRef) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise RequestError(f"{ref.where}: cannot open image file {path!r} ({exc.strerror or exc})") from None


def decode_base64(payload: str, ref: ImageRef) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            f"{ref.where}: neither a data URL, a file:// URL, an existing path nor valid base64: {_brief(payload)}"
        ) from None


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- chat content -----------------------------------------------------------------------------------------


def split_chat_images(messages: list[dict]) -> tuple[list[dict], list[ImageRef], list[ImageRef]]:
    """Messages for the chat template (`{"type": "image"}` / `{"type": "video"}` parts), their images in order and
    their videos in order."""
    out, images, videos = [], [], []
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            out.append(message)
            continue
        parts = []
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in IMAGE_PART_TYPES or kind in VIDEO_PART_TYPES:
                field_name = "video_url" if kind in VIDEO_PART_TYPES else "image_url"
                media = part.get(field_name) or {}
                url = media if isinstance(media, str) else media.get("url") if isinstance(media, dict) else None
                url_where = f"{where}.{field_name}" + ("" if isinstance(media, str) else ".url")
                if not isinstance(url, str) or not url:
                    raise RequestError(
                        f"{url_where}: {'a video' if field_name == 'video_url' else 'an image'} part "
                        f"needs a URL string, got {_brief(url)}"
                    )
                (videos if field_name == "video_url" else images).append(ImageRef(url, url_where))
                parts.append({"type": "video" if field_name == "video_url" else "image"})
            elif kind in REFUSED_PART_TYPES:
                raise RequestError(
                    f"{where}.type: {kind!r} parts are not supported by the HF reference engine "
                    "(image_url and video_url only)"
                )
            else:
                parts.append(part)
        out.append({**message, "content": parts})
    return out, images, videos
