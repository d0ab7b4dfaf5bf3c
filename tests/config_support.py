"""What the thresholds.yaml tests share: BASE, a small valid file to break or look things up in, helpers to write
and edit it and read the error it gives, and two fixtures (imported by name into each test module).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import suites as config_options
from harness.config.thresholds import load_thresholds
from harness.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SUITE_CHOICES = (
    "gsm8k, hf_parity, lm_eval, lmms_eval, logprob_decode_cache_hit, logprob_prefill_cache_hit, mm_prefix_cache, mmmu,"
    " mmmu_parity, prefix_branching, serving_perf, spec_accept_length, video_mme, video_mme_modes, video_mme_parity"
)

BASE = """\
models:
  canary:
    path: assets/canary/model
    engine: hf
    dtype: float32
    configs:
      tp1:
        engine: sglang
        args: [--dtype, bfloat16]
        gpus: 1
        suites: [gsm8k, logprob_prefill_cache_hit]
      ngram:
        args: [--speculative-algorithm=ngram, --tp-size, 2]
        suites: [gsm8k, spec_accept_length]
  big:
    path: org/Big-Model
    configs:
      tp4:
        args: [--tp-size, "4"]
        gpus: 4
        suites: [gsm8k]
references:
  gsm8k:
    canary:
      - metric: accuracy
        value: 0.99   # measured on the canary
        n: 1319
        sigma: 0.5
        provenance: test
  logprob_prefill_cache_hit:
    canary:
      - {metric: kl_div, max: 1.0e-3, match: {dtype: bf16}, provenance: test}
      - {metric: kl_div, max: 1.0e-6, provenance: test}
  spec_accept_length:
    canary:
      - metric: accept_length
        value: null
        n: null
        min_ratio: 0.95
        match: {speculative_algorithm: NGRAM}
        provenance: pending measurement
"""


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Work in an empty folder so messages name the file `thresholds.yaml`, as users see it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "thresholds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def error_of(folder: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_thresholds(write(folder, text))
    return str(info.value)


@pytest.fixture
def gsm8k_knobs(monkeypatch):
    """Knob checks read each eval's OPTIONS; pin gsm8k's here so these messages do not follow its edits."""
    real = config_options.suite_option_defaults
    fake = {"num_shots": 5, "limit": None, "mode": "native"}
    pinned = lambda suite: fake if suite == "gsm8k" else real(suite)  # noqa: E731
    monkeypatch.setattr(config_options, "suite_option_defaults", pinned)
