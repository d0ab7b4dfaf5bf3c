"""SGLang's native `/generate` request and response shapes, for the HF reference engine.

Parsing mirrors `GenerateReqInput` and `SamplingParams` of SGLang 0.5.17 (python/sglang/srt/managers/io_struct.py,
python/sglang/srt/sampling/sampling_params.py): `text` or `input_ids`, single or batched (a list), per-item or
shared `sampling_params` / `return_logprob` / `logprob_start_len` / `top_logprobs_num` / `rid`. Every bad value
raises `RequestError` naming its key path; the HTTP layer turns that into a 400.

Deliberate differences from SGLang (SGLang ignores unknown top-level keys and accepts features this engine does
not implement): an unknown key, or an SGLang feature this engine does not implement (audio data,
`mm_hashes`, LoRA, grammars, penalties, `n` > 1, `token_ids_logprob`, hidden states, ...) set to a non-default
value, is a 400 with the reason, so a suite can never believe a feature was exercised when it was not.

Images (`image_data`, vision-language models only; see `hf_multimodal` for the full rules): SGLang's shapes and
sources, except that http(s) URLs are a 400 (no network here), and so are a placeholder/image count mismatch
(SGLang falls back to a legacy path) and an already-expanded run of `<|image_pad|>`. Videos (`video_data`) take
the same shapes and sources, one `<|vision_start|><|video_pad|><|vision_end|>` per video.
`input_ids` + `image_data` means what SGLang makes of it (it decodes the ids to text for its processor): the
ids hold one `<|vision_start|><|image_pad|><|vision_end|>` per image, expanded like text's. On a text model
`image_data` stays a 400.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from hf_engine.errors import RequestError, as_bool, as_float, as_int, as_int_list, as_stop_strings, did_you_mean

DEFAULT_MAX_NEW_TOKENS = 128  # SamplingParams.max_new_tokens in SGLang


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    min_new_tokens: int = 0
    stop: tuple[str, ...] = ()
    stop_token_ids: frozenset[int] = frozenset()
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    no_stop_trim: bool = False
    sampling_seed: int | None = None


@dataclass(frozen=True)
class LogprobOptions:
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    return_text: bool = False


@dataclass
class GenerateItem:
    """One sequence to generate: what the worker needs, already validated."""

    rid: str
    input_ids: list[int]
    params: SamplingParams
    logprobs: LogprobOptions = field(default_factory=LogprobOptions)
    stream: bool = False
    use_cache: bool = True  # the health probe stays out of the prefix cache
    return_prompt_token_ids: bool = False
    multimodal: Any = None  # hf_multimodal.MultimodalPrompt of a prompt with images

    @property
    def cache_key(self) -> list[int]:
        """The ids the prefix cache is keyed by: image tokens carry their image's content key."""
        return self.input_ids if self.multimodal is None else self.multimodal.cache_key

    @property
    def image_tokens(self) -> int:
        return 0 if self.multimodal is None else self.multimodal.image_tokens

    @property
    def video_tokens(self) -> int:
        return 0 if self.multimodal is None else self.multimodal.video_tokens


# Sampling params the engine implements, and SGLang's others with the value that means "off".
_SAMPLING_SUPPORTED = {
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "min_new_tokens",
    "stop",
    "stop_token_ids",
    "ignore_eos",
    "skip_special_tokens",
    "no_stop_trim",
    "sampling_seed",
    "spaces_between_special_tokens",
    "stream_interval",
}
_SAMPLING_NEUTRAL = {
    "n": 1,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "repetition_penalty": 1.0,
    "json_schema": None,
    "regex": None,
    "ebnf": None,
    "structural_tag": None,
    "logit_bias": None,
    "stop_regex": None,
    "custom_params": None,
}
_TOP_LEVEL_SUPPORTED = {
    "text",
    "input_ids",
    "sampling_params",
    "return_logprob",
    "logprob_start_len",
    "top_logprobs_num",
    "return_text_in_logprobs",
    "stream",
    "rid",
    "log_metrics",
    "return_prompt_token_ids",
}
# The rest of SGLang 0.5.17's GenerateReqInput: accepted only when unset (None, False, 0, empty).
_TOP_LEVEL_UNSUPPORTED = dict.fromkeys(
    (
        "session_id",
        "input_embeds",
        "image_data",
        "video_data",
        "audio_data",
        "mm_hashes",
        "use_audio_in_video",
        "token_ids_logprob",
        "return_sampling_mask",
        "return_flat_raw_top_logprobs",
        "return_flat_raw_top_logprobs_b64",
        "return_hidden_states",
        "return_routed_experts",
        "routed_experts_start_len",
        "return_indexer_topk",
        "modalities",
        "session_params",
        "lora_path",
        "lora_id",
        "custom_logit_processor",
        "positional_embed_overrides",
        "bootstrap_host",
        "bootstrap_port",
        "bootstrap_room",
        "bootstrap_pair_key",
        "decode_tp_size",
        "routed_dp_rank",
        "disagg_prefill_dp_rank",
        "routing_key",
        "conversation_id",
        "background",
        "require_reasoning",
        "max_thinking_tokens",
        "priority",
        "extra_key",
        "no_logs",
        "custom_labels",
        "return_bytes",
        "return_entropy",
        "external_trace_header",
        "received_time",
        "max_dynamic_patch",
        "min_dynamic_patch",
        "image_max_dynamic_patch",
        "video_max_dynamic_patch",
        "images_config",
        "multi_item_delimiter_indices",
    )
)


@dataclass(frozen=True)
class Limits:
    """What the loaded model allows, for validation."""

    vocab_size: int
    context_length: int


def parse_generate(body: Any, tokenize, limits: Limits, images=None) -> tuple[list[GenerateItem], bool]:
    """Validate a `/generate` body; returns the items and whether the request was a batch.

    `images` is the model's `hf_multimodal.ImagePreparer` (None for a text model, where `image_data` stays a
    400): it reads `image_data` and expands each prompt's image placeholders, for `text` and `input_ids` alike.
    """
    if not isinstance(body, dict):
        raise RequestError(f"request body must be a JSON object, got {type(body).__name__}")
    media_keys = (
        ({"image_data"} | ({"video_data"} if images.video_processor is not None else set())) if images else set()
    )
    _check_keys(body, _TOP_LEVEL_SUPPORTED | media_keys, _TOP_LEVEL_UNSUPPORTED, "field", "")
    prompts, batched = _prompts(body, tokenize)
    n = len(prompts)
    image_refs = images.refs_per_prompt(body.get("image_data"), n, batched) if images else None
    video_refs = images.video_refs_per_prompt(body.get("video_data"), n, batched) if images else None
    sampling = _per_item(body.get("sampling_params"), n, batched, "sampling_params")
    return_logprob = _per_item(body.get("return_logprob"), n, batched, "return_logprob")
    start_len = _per_item(body.get("logprob_start_len"), n, batched, "logprob_start_len")
    top_num = _per_item(body.get("top_logprobs_num"), n, batched, "top_logprobs_num")
    rids = _rids(body.get("rid"), n, batched)
    return_text = as_bool(body.get("return_text_in_logprobs", False), "return_text_in_logprobs")
    stream = as_bool(body.get("stream", False), "stream")
    return_prompt_ids = as_bool(body.get("return_prompt_token_ids", False), "return_prompt_token_ids")
    items = []
    for i, ids in enumerate(prompts):
        where = f"[{i}]" if batched else ""
        prompt_where = f"input_ids{where}" if "input_ids" in body else f"text{where}"
        multimodal = images.prepare(ids, image_refs[i], prompt_where, video_refs[i]) if images else None
        if multimodal is not None:
            ids = multimodal.input_ids
        _check_ids(ids, limits, prompt_where)
        params = parse_sampling_params(sampling[i], len(ids), limits, f"sampling_params{where}")
        logprobs = LogprobOptions(
            return_logprob=as_bool(return_logprob[i] or False, f"return_logprob{where}"),
            logprob_start_len=as_int(-1 if start_len[i] is None else start_len[i], f"logprob_start_len{where}"),
            top_logprobs_num=as_int(top_num[i] or 0, f"top_logprobs_num{where}"),
            return_text=return_text,
        )
        if logprobs.logprob_start_len < -1:
            raise RequestError(f"logprob_start_len{where}: must be >= -1, got {logprobs.logprob_start_len}")
        if logprobs.return_logprob and logprobs.logprob_start_len > len(ids):
            raise RequestError(
                f"logprob_start_len{where}={logprobs.logprob_start_len} is higher than the number of input "
                f"tokens {len(ids)}. Please use a smaller logprob_start_len."
            )
        if logprobs.top_logprobs_num < 0:
            raise RequestError(f"top_logprobs_num{where}: must be >= 0, got {logprobs.top_logprobs_num}")
        items.append(GenerateItem(rids[i], ids, params, logprobs, stream, True, return_prompt_ids, multimodal))
    return items, batched


def parse_sampling_params(raw: Any, input_len: int, limits: Limits, where: str) -> SamplingParams:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise RequestError(f"{where}: expected an object, got {type(raw).__name__}")
    _check_keys(raw, _SAMPLING_SUPPORTED, _SAMPLING_NEUTRAL, "sampling param", where)

    def get(key, default):
        value = raw.get(key)
        return default if value is None else value

    room = limits.context_length - input_len
    max_new = raw.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    max_new = room if max_new is None else as_int(max_new, f"{where}.max_new_tokens")
    params = SamplingParams(
        max_new_tokens=min(max_new, room),
        temperature=as_float(get("temperature", 1.0), f"{where}.temperature"),
        top_p=as_float(get("top_p", 1.0), f"{where}.top_p"),
        top_k=as_int(get("top_k", -1), f"{where}.top_k"),
        min_p=as_float(get("min_p", 0.0), f"{where}.min_p"),
        min_new_tokens=as_int(get("min_new_tokens", 0), f"{where}.min_new_tokens"),
        stop=as_stop_strings(raw.get("stop"), f"{where}.stop"),
        stop_token_ids=frozenset(as_int_list(get("stop_token_ids", []), f"{where}.stop_token_ids")),
        ignore_eos=as_bool(get("ignore_eos", False), f"{where}.ignore_eos"),
        skip_special_tokens=as_bool(get("skip_special_tokens", True), f"{where}.skip_special_tokens"),
        no_stop_trim=as_bool(get("no_stop_trim", False), f"{where}.no_stop_trim"),
        sampling_seed=None
        if raw.get("sampling_seed") is None
        else as_int(raw["sampling_seed"], f"{where}.sampling_seed"),
    )
    _check_ranges(params, max_new, where)
    return params


def _check_keys(raw: dict, supported: set[str], off_values: dict[str, Any], noun: str, where: str) -> None:
    """Unknown keys and implemented-elsewhere features set to anything but "off" are refused by name."""
    prefix = f"{where}: " if where else ""
    for key, value in raw.items():
        if key in supported:
            continue
        if key not in off_values:
            hint = did_you_mean(key, supported | set(off_values))
            raise RequestError(f"{prefix}unknown {noun} {key!r}{hint}")
        off = off_values[key]
        if not (value is None or value == off or (off is None and not value)):
            raise RequestError(f"{prefix}{key}: not supported by the HF reference engine (got {value!r})")


def _check_ranges(p: SamplingParams, max_new: int, where: str) -> None:
    # The same bounds, in the same words, as SamplingParams.verify in SGLang.
    if max_new < 0:
        raise RequestError(f"{where}.max_new_tokens must be at least 0, got {max_new}.")
    if not math.isfinite(p.temperature) or p.temperature < 0:
        raise RequestError(f"{where}.temperature must be a non-negative finite number, got {p.temperature}.")
    if not 0.0 < p.top_p <= 1.0:
        raise RequestError(f"{where}.top_p must be in (0, 1], got {p.top_p}.")
    if not 0.0 <= p.min_p <= 1.0:
        raise RequestError(f"{where}.min_p must be in [0, 1], got {p.min_p}.")
    if p.top_k < 1 and p.top_k != -1:
        raise RequestError(f"{where}.top_k must be -1 (disable) or at least 1, got {p.top_k}.")
    if not 0 <= p.min_new_tokens <= max(max_new, 0):
        raise RequestError(f"{where}.min_new_tokens must be in [0, max_new_tokens({max_new})], got {p.min_new_tokens}.")


def _prompts(body: dict, tokenize) -> tuple[list[list[int]], bool]:
    text, input_ids = body.get("text"), body.get("input_ids")
    if (text is None) == (input_ids is None):
        raise RequestError("Either text or input_ids should be provided (exactly one of them).")
    if text is not None:
        if isinstance(text, str):
            return [tokenize(text)], False
        if isinstance(text, list) and text and all(isinstance(t, str) for t in text):
            return [tokenize(t) for t in text], True
        raise RequestError("text: expected a string or a non-empty list of strings")
    if isinstance(input_ids, list) and input_ids and all(isinstance(x, list) for x in input_ids):
        return [as_int_list(ids, f"input_ids[{i}]") for i, ids in enumerate(input_ids)], True
    if isinstance(input_ids, list):
        return [as_int_list(input_ids, "input_ids")], False
    raise RequestError("input_ids: expected a list of token ids or a list of such lists")


def _per_item(value: Any, n: int, batched: bool, key: str) -> list:
    if batched and isinstance(value, list):
        if len(value) != n:
            raise RequestError(f"{key}: the batch has {n} prompts but {len(value)} values")
        return value
    if not batched and isinstance(value, list):
        raise RequestError(f"{key}: a single prompt takes a single value, got a list")
    return [value] * n


def _rids(value: Any, n: int, batched: bool) -> list[str]:
    if value is None:
        return [uuid.uuid4().hex for _ in range(n)]
    if not batched:
        if not isinstance(value, str):
            raise RequestError(f"rid: expected a string, got {type(value).__name__}")
        return [value]
    if not (isinstance(value, list) and len(value) == n and all(isinstance(r, str) for r in value)):
        raise RequestError(f"rid: a batch of {n} prompts needs a list of {n} strings")
    if len(set(value)) != n:
        raise RequestError("rid: the rids of a batch must be distinct")
    return value


def _check_ids(ids: list[int], limits: Limits, where: str) -> None:
    if not ids:
        raise RequestError(f"{where}: the prompt is empty (0 tokens)")
    bad = [t for t in ids if not 0 <= t < limits.vocab_size]
    if bad:
        raise RequestError(f"{where}: token id {bad[0]} is outside the vocabulary [0, {limits.vocab_size})")
    if len(ids) >= limits.context_length:
        raise RequestError(
            f"{where}: the input ({len(ids)} tokens) is longer than the model's context length "
            f"({limits.context_length} tokens)."
        )
