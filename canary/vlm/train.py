"""Train the VLM canary on CPU, deterministically, with the loss on the answer tokens only.

Each step takes a batch of rows from `curriculum.batches` (a retrieval drill phase, then every task family; see
there why), puts them through the real processor, and trains only the answer and its `<|im_end|>`: with the loss
on every token a tiny VLM stayed at chance (feasibility.md, "A tiny VLM on this CPU"), the prompt tokens
drowning the answer. Determinism: fixed threads, `torch.use_deterministic_algorithms`, a seeded init and seeded
streams, so one seed gives the same bytes on the same libraries and CPU kind.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace

from canary.train import lr_at  # linear warmup, cosine decay: the same schedule as the text canary
from canary.vlm.curriculum import batches, video_stage_batches
from canary.vlm.hints import frame_hint_loss, hint_loss
from canary.vlm.model import IMAGE_PAD, PAD, VlmShape, make_model
from canary.vlm.prompts import encode_prompt, question_prompt, target_text, video_prompt
from canary.vlm.tasks import CANARY_FAMILIES
from canary.vlm.videomme_set import VideoExample

IGNORE = -100


@dataclass(frozen=True)
class VlmTrainConfig:
    seed: int = 0
    steps: int = 2600
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    open_fraction: float = 0.15  # of the questions of families with an open form (of the canary's, only colour)
    images_first_fraction: float = 0.2
    # which_image in the images-first prompt must map "<image 2>" in an option to the second image shown, a hop
    # the interleaved prompt does not need (there the image stands in the option itself). With half its rows in
    # that form it stayed at chance (0.42) after 3000 steps, so its rows all use the interleaved prompt.
    images_first_by_family: tuple[tuple[str, float], ...] = (("which_image", 0.0),)
    text_match_fraction: float = 0.25
    drill_steps: int = 500
    drill_vision_fraction: float = 0.5
    attention_hint_weight: float = 1.0
    threads: int = 2
    log_every: int = 50
    families: tuple[str, ...] = CANARY_FAMILIES
    # Share of task-phase batches that are Video-MME questions on 8 frames (canary.vlm.videomme_set).
    video_fraction: float = 0.0
    # Video rows are about 290 tokens (8 frames of 9 and Video-MME's long instruction) against about 60: a video
    # batch of 16 took 1.3 s, an image batch 0.25 s, so video batches are half as large.
    video_batch_size: int = 8
    # The video stage (train_video_stage): after the image run, from its weights as saved (bf16), a fresh optimiser.
    # Measured 2026-12-03 from the committed image run (90 held-out questions, 8 frames, chance 0.40): 0.56 after
    # 300 steps, 0.72 after 600, 0.80 after 900, 0.91 after 1200 (an experiment's checkpoints); the build's 1500
    # steps 0.967, `last` 0.47 with the frames reversed. From a fresh image run whose loss ended higher: 0.73.
    video_stage_steps: int = 1500
    video_stage_lr: float = 5e-4
    video_stage_warmup: int = 50
    video_stage_fraction: float = 0.6  # of its batches all video; the rest image batches, so images are kept
    frame_hint_weight: float = 1.0


def encode_example(processor, question, variant: str) -> tuple[dict, list[int]]:
    """A row's prompt ids and pixels, and its target ids. `question`: a task `Question` (MMMU prompt in
    `variant`) or a `VideoExample` (the Video-MME frames prompt)."""
    if isinstance(question, VideoExample):
        prompt = video_prompt(processor, question.doc(), question.frames())
    else:
        prompt = question_prompt(processor, question, variant)
    encoded = encode_prompt(processor, prompt)
    target = processor.tokenizer(target_text(question), add_special_tokens=False)["input_ids"]
    return encoded, target


def collate(rows: list[tuple[dict, list[int]]]):
    """Right-padded batch (the attention mask keeps pads out of attention and of the M-RoPE positions) and
    labels that are IGNORE everywhere but on the targets."""
    import torch

    width = max(len(encoded["input_ids"]) + len(target) for encoded, target in rows)
    ids, mask, types, labels, pixels, grids = [], [], [], [], [], []
    for encoded, target in rows:
        n, pad = len(encoded["input_ids"]), width - len(encoded["input_ids"]) - len(target)
        ids.append(encoded["input_ids"] + target + [PAD] * pad)
        mask.append([1] * (n + len(target)) + [0] * pad)
        types.append(encoded["mm_token_type_ids"] + [0] * (len(target) + pad))
        labels.append([IGNORE] * n + target + [IGNORE] * pad)
        if "pixel_values" in encoded:
            pixels.append(encoded["pixel_values"])
            grids.append(encoded["image_grid_thw"])
    inputs = {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.tensor(mask),
        "mm_token_type_ids": torch.tensor(types),
    }
    if pixels:
        inputs.update(pixel_values=torch.cat(pixels), image_grid_thw=torch.cat(grids))
    return inputs, torch.tensor(labels)


def training_loss(model, inputs, labels, rows, hint_weight: float, frame_hints: tuple[list, float] | None = None):
    """Cross-entropy of the next token at target positions only (the LM head runs on those positions alone), plus
    `hint_weight` times the attention hints (canary.vlm.hints) on the multiple-choice rows and, with
    `frame_hints` = (each row's video question family or None, weight), the frame hints on the video rows."""
    import torch.nn.functional as F

    out = model.model(**inputs, use_cache=False, output_attentions=hint_weight > 0 or frame_hints is not None)
    targets = labels[:, 1:]
    keep = targets != IGNORE
    loss = F.cross_entropy(model.lm_head(out.last_hidden_state[:, :-1][keep]), targets[keep])
    prompt_ids = [e["input_ids"] for e, _ in rows]
    if hint_weight > 0:
        hints = hint_loss(out.attentions, prompt_ids, [t for _, t in rows])
        if hints is not None:
            loss = loss + hint_weight * hints
    if frame_hints is not None:
        families, weight = frame_hints
        hints = frame_hint_loss(out.attentions, prompt_ids, families, IMAGE_PAD)
        if hints is not None:
            loss = loss + weight * hints
    return loss


def _adamw(model, config: VlmTrainConfig, lr: float):
    import torch

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
    )


def _optimise(
    model,
    processor,
    stream,
    schedule: VlmTrainConfig,
    config: VlmTrainConfig,
    frame_hints: bool,
    label: str,
    log,
    on_log=None,
) -> tuple[int, float]:
    """The training loop of both runs: `schedule.steps` batches from `stream`, lr by `lr_at(step, schedule)`, the
    frame hints on the video rows with `frame_hints`, log lines headed `label`; returns (examples, last logged loss)."""
    import torch

    optimizer = _adamw(model, config, schedule.lr)
    start, recent, last_loss, examples = time.perf_counter(), [], float("nan"), 0
    for step, batch in enumerate(stream):
        rows = [encode_example(processor, question, variant) for question, variant in batch]
        inputs, labels = collate(rows)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, schedule)
        families = [q.family if isinstance(q, VideoExample) else None for q, _ in batch]
        loss = training_loss(
            model,
            inputs,
            labels,
            rows,
            config.attention_hint_weight,
            (families, config.frame_hint_weight) if frame_hints else None,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        examples += len(rows)
        recent.append(loss.item())
        if (step + 1) % config.log_every == 0 or step + 1 == schedule.steps:
            elapsed, last_loss = time.perf_counter() - start, sum(recent) / len(recent)
            print(
                f"{label} {step + 1}/{schedule.steps} loss {last_loss:.4f} lr {lr_at(step, schedule):.2e} "
                f"{elapsed:.0f}s {(step + 1) / elapsed:.1f} steps/s",
                file=log,
                flush=True,
            )
            recent = []
            if on_log is not None:
                on_log(step + 1, model)
                model.train()
    return examples, last_loss


def train(processor, shape: VlmShape, config: VlmTrainConfig, held_out: set, log=sys.stderr, on_log=None):
    """Train from scratch; returns (model, stats). `on_log(step, model)` runs at each log line (experiments).

    Video (measured 2026-12-02, 90 held-out Video-MME questions on 8 frames, chance 0.40): video batches in 30 % of
    the task phase from scratch reached 0.71 and cost the image families up to 0.35 (same_colour 0.64); 1000 more
    steps from the committed image canary (half video batches, lr 5e-4) kept the images (0.982) and reached 0.70,
    0.72 with the frames reversed: the order of frames was not learned. A third hint head that made every option
    token attend to the frame its question is about (the second for "first", the last for "last") did worse: 0.39
    after 800 of 1200 such steps (half video batches, lr 5e-4). So video has a stage of its own
    (`train_video_stage`)."""
    import torch

    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    model = make_model(shape, config.seed)
    if config.attention_hint_weight > 0:
        model.set_attn_implementation("eager")  # the hints need the attention weights, which sdpa does not return
    model.train()
    start = time.perf_counter()
    examples, last_loss = _optimise(
        model, processor, batches(config, held_out), config, config, False, "step", log, on_log
    )
    model.set_attn_implementation("sdpa")
    model.eval()
    stats = {
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_examples": examples,
        "final_loss": round(last_loss, 5),
    }
    return model, stats


def train_video_stage(model, processor, config: VlmTrainConfig, held_out: set, log=sys.stderr, on_log=None):
    """Continue `model` (the image run's, as saved) on `video_stage_batches` with both hint kinds, in place;
    returns stats. Its own schedule (`video_stage_lr`, `video_stage_warmup`, cosine over `video_stage_steps`) and
    a fresh AdamW with the image run's settings."""
    import torch

    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(config.seed)
    model.set_attn_implementation("eager")
    model.train()
    stage = replace(
        config, steps=config.video_stage_steps, lr=config.video_stage_lr, warmup_steps=config.video_stage_warmup
    )
    start = time.perf_counter()
    examples, last_loss = _optimise(
        model, processor, video_stage_batches(config, held_out), stage, config, True, "video stage", log, on_log
    )
    model.set_attn_implementation("sdpa")
    model.eval()
    return {
        "video_stage_seconds": round(time.perf_counter() - start, 1),
        "video_stage_examples": examples,
        "video_stage_final_loss": round(last_loss, 5),
    }
