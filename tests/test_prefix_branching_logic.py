"""Decision logic of `prefix_branching`: what a server is, and the cached_tokens it must report when requests branch.

Inputs are shaped like real SGLang 0.5.17 `/server_info` and `/model_info` answers (tests/data/sglang_responses);
the expected numbers are the ones a real server gave (../shared/research/sglang-on-gpu.md).
"""

import json
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.evals.prefix_branching import (
    CacheLayout,
    UnknownCacheLayout,
    branch_prompts,
    classify_cache,
    config_mamba_chunk,
    expected_branch_hits,
)

DATA = Path(__file__).parent / "data" / "sglang_responses"
SERVER_INFO = json.loads((DATA / "server_info.json").read_text())
MODEL_INFO = json.loads((DATA / "model_info.json").read_text())


def hits(server: str, model: str, prefix_len: int, **kwargs) -> list[int]:
    return expected_branch_hits(classify_cache(SERVER_INFO[server], MODEL_INFO[model], **kwargs), prefix_len)


@pytest.mark.parametrize(
    "server, prefix_len, expected",
    [
        # Observed on SGLang 0.5.17 (tiny Qwen2, triton backend).
        ("attention_page1", 257, [0, 257, 257]),
        ("attention_page1", 100, [0, 100, 100]),
        ("attention_page16", 257, [0, 256, 256]),
        ("attention_page16", 100, [0, 96, 96]),
    ],
)
def test_attention_radix_cache_reuses_the_prefix_rounded_to_the_page(server, prefix_len, expected):
    assert hits(server, "qwen2", prefix_len) == expected


@pytest.mark.parametrize(
    "prefix_len, expected", [(257, [0, 0, 256]), (100, [0, 0, 64]), (64, [0, 0, 64]), (63, [0, 0, 0])]
)
def test_mamba_extra_buffer_only_the_third_request_hits_at_the_64_token_chunk(prefix_len, expected):
    # Observed on SGLang 0.5.17 with a tiny Qwen3-Next, page size 1: P=257, 100 and 64 as listed.
    assert hits("qwen3_next_extra_buffer", "qwen3_next", prefix_len) == expected


def test_mamba_extra_buffer_granularity_is_the_page_when_the_page_is_larger_than_the_chunk():
    layout = classify_cache(SERVER_INFO["qwen3_next_extra_buffer_page128"], MODEL_INFO["qwen3_next"])
    assert (layout.kind, layout.granularity) == ("mamba_extra_buffer", 128)
    assert expected_branch_hits(layout, 257) == [0, 0, 256]
    assert expected_branch_hits(layout, 100) == [0, 0, 0]


def test_mamba_chunk_from_the_model_config_sets_the_granularity(tmp_path):
    # Nemotron-H style models carry a larger SSD chunk; SGLang reads hf_config.mamba_chunk_size.
    (tmp_path / "config.json").write_text(json.dumps({"mamba_chunk_size": 256}))
    chunk = config_mamba_chunk(str(tmp_path))
    assert chunk == 256
    assert hits("qwen3_next_extra_buffer", "qwen3_next", 600, mamba_chunk=chunk) == [0, 0, 512]
    assert config_mamba_chunk(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("prefix_len", [257, 100, 64])
def test_mamba_no_buffer_never_reuses_a_branch(prefix_len):
    assert hits("qwen3_next_no_buffer", "qwen3_next", prefix_len) == [0, 0, 0]


@pytest.mark.parametrize(
    "server, model, kind",
    [
        ("qwen3_next_extra_buffer_without_uses_field", "qwen3_next", "mamba_extra_buffer"),
        ("attention_page16_without_uses_field", "qwen2", "attention"),
    ],
)
def test_without_uses_mamba_radix_cache_the_architecture_decides(server, model, kind):
    assert classify_cache(SERVER_INFO[server], MODEL_INFO[model]).kind == kind


def test_legacy_mamba_scheduler_strategy_field_is_read():
    layout = classify_cache(SERVER_INFO["qwen3_next_legacy_scheduler_strategy"], MODEL_INFO["qwen3_next"])
    assert layout.kind == "mamba_extra_buffer"


def test_newer_uses_mamba_radix_cache_field_wins_over_the_architecture_table():
    # Newer SGLang reports whether the Mamba radix cache is in use; an unknown architecture is then fine.
    unknown_arch = {"architectures": ["SomeFutureHybridForCausalLM"]}
    assert classify_cache(SERVER_INFO["newer_uses_mamba_radix_cache_true"], unknown_arch).kind == "mamba_extra_buffer"
    assert classify_cache(SERVER_INFO["newer_uses_mamba_radix_cache_false"], MODEL_INFO["qwen2"]).kind == "attention"


def test_radix_cache_disabled_is_reported_as_disabled():
    assert classify_cache(SERVER_INFO["attention_radix_disabled"], MODEL_INFO["qwen2"]).kind == "disabled"


def test_hybrid_model_on_auto_strategy_is_an_unknown_combination():
    with pytest.raises(
        UnknownCacheLayout, match=r"mamba_radix_cache_strategy='auto'.*set the prefix_branching option cache_kind"
    ):
        classify_cache(SERVER_INFO["qwen3_next_auto"], MODEL_INFO["qwen3_next"])


def test_mamba_strategy_on_an_architecture_not_known_to_be_hybrid_is_an_unknown_combination():
    info = {**SERVER_INFO["attention_page16_without_uses_field"], "mamba_radix_cache_strategy": "extra_buffer"}
    with pytest.raises(UnknownCacheLayout, match="not a known hybrid Mamba model"):
        classify_cache(info, {"architectures": ["MysteryForCausalLM"]})
    # Where the server says it runs no Mamba radix cache, a strategy flag it ignores changes nothing.
    info = {**SERVER_INFO["attention_page1"], "mamba_radix_cache_strategy": "extra_buffer"}
    assert classify_cache(info, {"architectures": ["MysteryForCausalLM"]}).kind == "attention"


def test_cache_kind_option_overrides_detection_and_is_validated():
    layout = classify_cache(SERVER_INFO["qwen3_next_auto"], MODEL_INFO["qwen3_next"], cache_kind="mamba_extra_buffer")
    assert expected_branch_hits(layout, 257) == [0, 0, 256]
    with pytest.raises(
        ConfigError, match=r"unknown cache_kind 'mamba_extra_bufer' \(did you mean 'mamba_extra_buffer'\?\)"
    ):
        classify_cache(SERVER_INFO["qwen3_next_auto"], MODEL_INFO["qwen3_next"], cache_kind="mamba_extra_bufer")


def test_disabled_layout_has_no_expectation():
    with pytest.raises(ValueError):
        expected_branch_hits(CacheLayout("disabled", 1, 1, ""), 257)


class _Tokenizer:
    all_special_ids = (0, 1)

    def __len__(self):
        return 50


def test_branch_prompts_share_exactly_the_prefix_and_diverge_at_its_end():
    prompts = branch_prompts(_Tokenizer(), prefix_len=257, suffix_len=64, seed=0)
    assert [len(p.ids) for p in prompts] == [321, 321, 321]
    assert prompts[0].ids[:257] == prompts[1].ids[:257] == prompts[2].ids[:257]
    assert len({p.ids[257] for p in prompts}) == 3
    assert not {0, 1} & {i for p in prompts for i in p.ids}
    assert branch_prompts(_Tokenizer(), 257, 64, seed=0) == prompts


@pytest.mark.parametrize(
    "algorithm, page, prefix_len, expected",
    [
        # Observed on SGLang 0.5.17, one H200, canary/eagle3 (page 1): [0, 256, 256] for 257, [0, 99, 99] for 100.
        ("EAGLE3", 1, 257, [0, 256, 256]),
        ("EAGLE3", 1, 100, [0, 99, 99]),
        ("EAGLE", 16, 257, [0, 256, 256]),
        ("EAGLE", 16, 97, [0, 96, 96]),
        ("NEXTN", 1, 64, [0, 63, 63]),
        # NGRAM keeps token keys (observed: canary/ngram [0, 257, 257])
        ("NGRAM", 1, 257, [0, 257, 257]),
    ],
)
def test_eagle_family_speculation_keys_the_radix_cache_by_bigrams(algorithm, page, prefix_len, expected):
    server = {**SERVER_INFO["attention_page1"], "page_size": page, "speculative_algorithm": algorithm}
    layout = classify_cache(server, MODEL_INFO["qwen2"])
    assert layout.bigram_keys == (algorithm != "NGRAM")
    assert expected_branch_hits(layout, prefix_len) == expected
