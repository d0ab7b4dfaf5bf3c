"""Per-suite knobs in thresholds.yaml (`options:` of a model or a config), and the suite registry.

Every knob is optional: an unset knob leaves the suite's own default in force, so defaults live
next to each eval, not here. `SuiteOptions` has one field per suite, which makes it the single
registry of suite names (`SUITES`); unknown suites and unknown knobs are rejected with the valid
choices by the schema (extra keys are forbidden).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gsm8kOptions(_Strict):
    num_shots: int | None = Field(None, ge=0)
    limit: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    mode: Literal["generate", "chat"] | None = None
    data_path: str | None = None
    concurrency: int | None = Field(None, ge=1)


class CacheHitOptions(_Strict):
    num_samples: int | None = Field(None, ge=1)
    token_budget: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    prompt_source: str | None = None


class BranchingOptions(_Strict):
    prefix_lengths: list[int] | None = None
    suffix_length: int | None = Field(None, ge=1)


class AcceptLengthOptions(_Strict):
    num_prompts: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)


class HfParityOptions(_Strict):
    num_prompts: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    hf_device: str | None = None


class MultimodalOptions(_Strict):
    limit: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    num_frames: int | None = Field(None, ge=1)


class PerfOptions(_Strict):
    concurrency: list[int] | None = None
    input_len: int | None = Field(None, ge=1)
    output_len: int | None = Field(None, ge=1)
    num_prompts: int | None = Field(None, ge=1)


class SuiteOptions(_Strict):
    """Per-suite knobs; unset knobs are left to the suite's own defaults. Its fields ARE the suite registry."""

    gsm8k: Gsm8kOptions | None = None
    logprob_prefill_cache_hit: CacheHitOptions | None = None
    logprob_decode_cache_hit: CacheHitOptions | None = None
    prefix_branching: BranchingOptions | None = None
    spec_accept_length: AcceptLengthOptions | None = None
    hf_parity: HfParityOptions | None = None
    mmmu: MultimodalOptions | None = None
    video_mme: MultimodalOptions | None = None
    perf: PerfOptions | None = None


SUITES: tuple[str, ...] = tuple(SuiteOptions.model_fields)
