"""The model side of images in the HF reference engine: load a VLM, and run it over a KV cache with its images.

First target: Qwen3-VL (`Qwen3VLForConditionalGeneration`, transformers 5.x); Qwen2-VL-shaped models with the same
`model.language_model` / `get_image_features` / `get_rope_index` interface take the same path, without DeepStack.

One HF forward (`model(**processor_outputs)`) embeds the prompt, scatters each image's vision features onto its
`<|image_pad|>` tokens, adds the DeepStack features of those tokens after the first decoder layers, and computes
3D rope positions over the whole prompt (`get_rope_index` with `image_grid_thw`). The engine instead prefills only
the suffix after a cached prefix, so it does those steps itself, per chunk [start, end):

- positions: `get_rope_index` over the whole expanded prompt once per request, then the slice [start, end);
  positions past the prompt (decode, and the KV of the last generated token) are `index + rope_delta` on all three
  axes, as HF generation continues them (`rope_deltas`);
- features: the vision tower runs on the images with at least one token in [start, end) (a cache hit can end inside
  an image's tokens, so part of an image may be needed); its rows for those tokens replace the embeddings, and
  their DeepStack rows go with a mask over the chunk;
- text: the language model runs on `inputs_embeds` over the cached KV; logits from `lm_head`, float32.

The vision tower treats each image on its own (block-diagonal attention over cu_seqlens), so features of a subset
equal those of the whole set up to float summation order. This engine never calls the HF model's `forward` for a
VLM: that path keeps `rope_deltas` as state on the model between calls, which would leak from one request into the
next; here positions are always passed explicitly.

SGLang (python/sglang/srt/models/qwen3_vl.py, managers/mm_utils.py `general_mm_embed_routine`) does the same per
extend batch: mrope positions computed by its processor for the whole prompt, embeddings of the items that overlap
the extend range, DeepStack added in the first layers. It also caches vision embeddings across requests; this
engine recomputes them per request.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

log = logging.getLogger("hf_server")


def load_vision_language_model(model_path: str, dtype):
    """The checkpoint's image-text-to-text class: AutoModelForImageTextToText, else its config's architecture."""
    import transformers

    try:
        return transformers.AutoModelForImageTextToText.from_pretrained(model_path, dtype=dtype)
    except ValueError as exc:  # the auto class does not map this config
        architectures = json.loads((Path(model_path) / "config.json").read_text()).get("architectures") or []
        model_class = next((getattr(transformers, a) for a in architectures if hasattr(transformers, a)), None)
        if model_class is None:
            raise ValueError(f"{model_path}: no transformers class for architectures {architectures} ({exc})") from None
        return model_class.from_pretrained(model_path, dtype=dtype)


class VisionLanguageForward:
    """Prefill and decode of one VLM sequence over a `DynamicCache`, images placed at their tokens."""

    def __init__(self, model):
        self.model = model
        self.inner = model.model
        self.language_model = model.model.language_model
        self.embed_tokens = self.language_model.get_input_embeddings()
        self.lm_head = model.get_output_embeddings()
        self.image_token_id = int(model.config.image_token_id)
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def forward(self, ids: list[int], past, logits_for_last: int, mm) -> torch.Tensor:
        """Run `ids` after the tokens in `past`; float32 logits of the last `logits_for_last` positions."""
        start = past.get_seq_length()
        end = start + len(ids)
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        embeds = self.embed_tokens(input_ids)
        extra = self._place_images(mm, start, end, embeds) if mm is not None else {}
        out = self.language_model(
            inputs_embeds=embeds,
            position_ids=self.positions(mm, start, end),
            past_key_values=past,
            use_cache=True,
            **extra,
        )
        hidden = out.last_hidden_state[:, -max(1, logits_for_last) :]
        return self.lm_head(hidden)[0].float()

    def positions(self, mm, start: int, end: int) -> torch.Tensor:
        """3D rope positions [3, 1, end - start] of tokens start..end-1."""
        if mm is None:
            return torch.arange(start, end, device=self.device).view(1, 1, -1).expand(3, 1, -1)
        if mm.positions is None:
            mm.positions, mm.rope_delta = self._rope_index(mm)
        n = mm.positions.shape[-1]
        inside = mm.positions[:, :, start : min(end, n)]
        after = torch.arange(max(start, n), end, device=self.device) + mm.rope_delta
        return torch.cat([inside, after.view(1, 1, -1).expand(3, 1, -1)], dim=-1)

    def _rope_index(self, mm) -> tuple[torch.Tensor, int]:
        input_ids = torch.tensor([mm.input_ids], dtype=torch.long, device=self.device)
        token_types = torch.zeros_like(input_ids, dtype=torch.int)
        kinds = mm.item_kinds()
        for (span_start, span_end), kind in zip(mm.spans, kinds):
            token_types[0, span_start:span_end] = kind  # 1: image, 2: video (0: text)
        grids = {kind: [k for k, item_kind in enumerate(kinds) if item_kind == kind] for kind in (1, 2)}
        # a video's temporal patches are items of grid (1, h, w): what get_rope_index splits a video's grid into
        image_grid, video_grid = (
            mm.image_grid_thw[grids[kind]].to(self.device) if grids[kind] else None for kind in (1, 2)
        )
        positions, delta = self.inner.get_rope_index(
            input_ids=input_ids, mm_token_type_ids=token_types, image_grid_thw=image_grid, video_grid_thw=video_grid
        )
        return positions, int(delta.reshape(-1)[0])

    def _place_images(self, mm, start: int, end: int, embeds: torch.Tensor) -> dict:
        """Write the vision rows of image tokens in [start, end) into `embeds`; the DeepStack kwargs, if any."""
        needed = [k for k, (s, e) in enumerate(mm.spans) if s < end and e > start]
        if not needed:
            return {}
        features, deepstack = self._image_features(mm, needed)
        mask = torch.zeros(1, end - start, dtype=torch.bool, device=self.device)
        rows, deep_rows = [], [[] for _ in deepstack]
        for k, image_rows, image_deep in zip(needed, features, zip(*deepstack) if deepstack else [()] * len(needed)):
            span_start, span_end = mm.spans[k]
            first, last = max(span_start, start), min(span_end, end)
            mask[0, first - start : last - start] = True
            rows.append(image_rows[first - span_start : last - span_start])
            for layer, layer_rows in enumerate(image_deep):
                deep_rows[layer].append(layer_rows[first - span_start : last - span_start])
        embeds[mask] = torch.cat(rows).to(embeds.dtype)
        if not deepstack:
            return {}
        return {"visual_pos_masks": mask, "deepstack_visual_embeds": [torch.cat(layer) for layer in deep_rows]}

    def _image_features(self, mm, needed: list[int]) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Vision features of items `needed` (per item), and their DeepStack features (per layer, per item). A
        video's temporal patch runs as an image of grid (1, h, w): Qwen3-VL's `get_video_features` is
        `get_image_features`, and its vision tower attends within one temporal patch."""
        offsets = [0]
        for count in mm.patch_counts:
            offsets.append(offsets[-1] + count)
        pixels = torch.cat([mm.pixel_values[offsets[k] : offsets[k + 1]] for k in needed]).to(self.device)
        grid = mm.image_grid_thw[needed].to(self.device)
        out = self.inner.get_image_features(pixels, grid, return_dict=True)
        sizes = [len(rows) for rows in out.pooler_output]
        deepstack = getattr(out, "deepstack_features", None) or []
        return list(out.pooler_output), [per_image(layer, sizes) for layer in deepstack]


def per_image(layer, sizes: list[int]) -> list[torch.Tensor]:
    """One DeepStack layer's rows split per image. transformers 5.23 splits them already (a tuple per image);
    5.17, which the GPU image has, returns one tensor of every image's rows (seen on the H200, 2026-12-02)."""
    if isinstance(layer, torch.Tensor):
        return list(torch.split(layer, sizes))
    return list(layer)
