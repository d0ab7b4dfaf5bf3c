"""A serving workload as thresholds.yaml declares it, and its prompts built deterministically.

Prompts are token ids drawn with a seeded RNG from the model's ordinary tokens (every id below the model's
vocabulary size that the tokenizer does not list as special or added: a VLM's image and video placeholders are
added tokens, and a stray one would make the request a 400), sent as `input_ids` so every request has exactly its
input length, as bench_serving's
`random-ids` dataset does. With `range_ratio` < 1 each request's input and output lengths are drawn uniformly
from [length * range_ratio, length] (bench_serving's `compute_random_lens`). `ignore_eos` makes every request
produce exactly its output length, which `measure` checks.

`dataset: images` sends OpenAI chat streams instead: `images_per_request` seeded noise images of `image_size` and
a text of `input_len` ordinary ids (`image_requests`), timed by `measure.stream_chat_one`.

`dataset: sharegpt` reads prompts from a local ShareGPT-format JSON file instead (`dataset_path`, relative to
thresholds.yaml: a list of `{"conversations": [{"from", "value"}, ...]}`), as bench_serving's `sharegpt` dataset:
the first turn is the prompt, sent as text as bench_serving sends it (tokenized without special tokens only to
filter it), the second's token count the output length unless the workload sets `output_len`; conversations with
fewer than 2 turns, a prompt or reply under 4 tokens, or
a prompt over `input_len` tokens are left out; a seeded shuffle picks the requests.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError

SHAPE_KEYS = (
    "input_len",
    "output_len",
    "range_ratio",
    "num_prompts",
    "request_rate",
    "max_concurrency",
    "warmup",
    "dataset",
    "dataset_path",
    "image_size",
    "images_per_request",
    "connections",
)
DATASETS = ("random", "sharegpt", "images")
# keep_alive: the client keeps its connections open across requests; per_request: a new connection for every
# request, as bench_serving opens a session per request (harness.evals.serving_perf's `connections` option)
CONNECTIONS = ("keep_alive", "per_request")


@dataclass(frozen=True)
class Workload:
    name: str
    input_len: int
    output_len: int
    num_prompts: int
    request_rate: float = math.inf  # requests per second (Poisson arrivals); inf: all at once
    max_concurrency: int | None = None
    range_ratio: float = 1.0
    warmup: int = 2
    dataset: str = "random"
    dataset_path: str | None = None
    fixed_output: bool = True  # sharegpt: False takes each reply's own length
    image_size: tuple[int, int] = (448, 448)  # images: width, height of each request's images
    images_per_request: int = 1
    connections: str | None = None  # one of CONNECTIONS; None: the suite's `connections` option

    @classmethod
    def from_options(cls, name: str, raw: Mapping[str, Any], where: str) -> Workload:
        unknown = sorted(set(raw) - set(SHAPE_KEYS))
        if unknown:
            from harness.errors import unknown_choice

            raise unknown_choice("workload key", unknown[0], SHAPE_KEYS, where=f"{where}.{name}")
        rate = raw.get("request_rate", "inf")
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}.{name}.request_rate: {rate!r} (a number of requests per second, or inf)"
            ) from None
        workload = cls(
            name,
            int(raw.get("input_len", 128)),
            int(raw.get("output_len", 64)),
            int(raw.get("num_prompts", 64)),
            rate,
            raw.get("max_concurrency"),
            float(raw.get("range_ratio", 1.0)),
            int(raw.get("warmup", 2)),
            raw.get("dataset", "random"),
            raw.get("dataset_path"),
            "output_len" in raw,
            tuple(raw.get("image_size", (448, 448))),
            int(raw.get("images_per_request", 1)),
            raw.get("connections"),
        )
        if workload.dataset not in DATASETS:
            from harness.errors import unknown_choice

            raise unknown_choice("workload dataset", workload.dataset, DATASETS, where=f"{where}.{name}.dataset")
        if workload.connections is not None and workload.connections not in CONNECTIONS:
            from harness.errors import unknown_choice

            raise unknown_choice("connections", workload.connections, CONNECTIONS, where=f"{where}.{name}.connections")
        if workload.dataset == "sharegpt" and not workload.dataset_path:
            raise ConfigError(
                f"{where}.{name}: dataset sharegpt needs dataset_path (a local ShareGPT-format JSON file)"
            )
        if min(workload.input_len, workload.output_len, workload.num_prompts) < 1 or not 0 < workload.range_ratio <= 1:
            raise ConfigError(
                f"{where}.{name}: input_len, output_len and num_prompts must be >= 1 and range_ratio in "
                f"(0, 1], got {dict(raw)}"
            )
        return workload

    def record(self) -> dict:
        keys = (
            "input_len",
            "output_len",
            "num_prompts",
            "request_rate",
            "max_concurrency",
            "range_ratio",
            "warmup",
            "dataset",
            "dataset_path",
        ) + (("image_size", "images_per_request") if self.dataset == "images" else ())
        keys += ("connections",) if self.connections else ()
        return {
            k: getattr(self, k) if not (k == "request_rate" and math.isinf(self.request_rate)) else "inf" for k in keys
        }


def lengths(full: int, ratio: float, count: int, rng: random.Random) -> list[int]:
    low = max(1, int(full * ratio))
    return [full if low == full else rng.randint(low, full) for _ in range(count)]


def ordinary_ids(tokenizer, model_vocab_size: int) -> list[int]:
    """Ids a prompt may hold: below the model's vocabulary size (its embedding may be smaller than the tokenizer)
    and neither special nor added."""
    reserved = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return [i for i in range(min(model_vocab_size, len(tokenizer))) if i not in reserved]


def prompt_ids(tokenizer_path: str, model_path: str):
    """The tokenizer, and the ordinary token ids of the model under test (its config's vocab_size bounds the
    tokenizer's)."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = AutoConfig.from_pretrained(model_path)
    vocab = getattr(getattr(config, "text_config", config), "vocab_size", None) or len(tokenizer)
    return tokenizer, ordinary_ids(tokenizer, vocab)


def build_requests(workload: Workload, ids: list[int], seed: int) -> list[tuple[list[int], int]]:
    """(input_ids, output_len) per request: the same every run for the same workload, ids and seed."""
    rng = random.Random(f"serving-perf/{workload.name}/{seed}")
    count = workload.num_prompts + workload.warmup
    inputs, outputs = (
        lengths(workload.input_len, workload.range_ratio, count, rng),
        lengths(workload.output_len, workload.range_ratio, count, rng),
    )
    return [([rng.choice(ids) for _ in range(n_in)], n_out) for n_in, n_out in zip(inputs, outputs)]


def sharegpt_requests(workload: Workload, tokenizer, path, seed: int) -> list[tuple[str, int]]:
    """(prompt text, output_len) per request from a ShareGPT-format file (see the module docstring)."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        conversations = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"serving_perf.workloads.{workload.name}.dataset_path: {path}: not a readable JSON file ({exc})"
        ) from None
    usable = []
    for entry in conversations if isinstance(conversations, list) else []:
        turns = (entry.get("conversations") or entry.get("conversation") or []) if isinstance(entry, dict) else []
        if len(turns) < 2:
            continue
        prompt = tokenizer.encode(turns[0]["value"], add_special_tokens=False)
        reply = len(tokenizer.encode(turns[1]["value"], add_special_tokens=False))
        if len(prompt) >= 4 and reply >= 4 and len(prompt) <= workload.input_len:
            usable.append((turns[0]["value"], workload.output_len if workload.fixed_output else reply))
    needed = workload.num_prompts + workload.warmup
    if len(usable) < needed:
        raise ConfigError(
            f"serving_perf.workloads.{workload.name}: {path} has {len(usable)} usable conversations "
            f"(2+ turns, 4+ tokens each, prompt <= input_len {workload.input_len}); {needed} needed"
        )
    random.Random(f"serving-perf/{workload.name}/{seed}").shuffle(usable)
    return usable[:needed]


def image_requests(workload: Workload, tokenizer, ids: list[int], seed: int) -> list[tuple[list[dict], int]]:
    """(chat messages, output_len) per request for `dataset: images`, as bench_serving's `image` dataset: each
    request's images seeded random RGB noise of `image_size` (PNG data URLs: no cache can share them), then a text
    of `input_len` seeded ordinary ids, decoded."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    rng = random.Random(f"serving-perf/{workload.name}/{seed}")
    count = workload.num_prompts + workload.warmup
    inputs, outputs = (
        lengths(workload.input_len, workload.range_ratio, count, rng),
        lengths(workload.output_len, workload.range_ratio, count, rng),
    )
    pixels = np.random.default_rng(rng.randrange(2**32))
    width, height = workload.image_size
    out = []
    for n_in, n_out in zip(inputs, outputs):
        content = []
        for _ in range(workload.images_per_request):
            buffer = io.BytesIO()
            Image.fromarray(pixels.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
            content.append(
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()},
                }
            )
        content.append({"type": "text", "text": tokenizer.decode([rng.choice(ids) for _ in range(n_in)])})
        out.append(([{"role": "user", "content": content}], n_out))
    return out


def chat_payload(messages: list[dict], output_len: int) -> dict:
    return {
        "model": "default",
        "messages": messages,
        "max_tokens": output_len,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def payload(prompt: list[int] | str, output_len: int) -> dict:
    """A native streaming request of token ids, or of text (sharegpt: as bench_serving sends it)."""
    return {
        "text" if isinstance(prompt, str) else "input_ids": prompt,
        "stream": True,
        "sampling_params": {"max_new_tokens": output_len, "ignore_eos": True, "temperature": 0.0},
    }
