"""thresholds.yaml, a valid file: numerics, reference selection (first match wins), server specs and suite
options; in-place updates by --harness-update-thresholds; and the repository's own thresholds.yaml.
"""

from __future__ import annotations

import dataclasses

import config_support as support
import pytest
from config_support import BASE, REPO, edit, write

from harness.config.thresholds import KNOWN_SUITES, NoReferenceError, load_thresholds, resolve_model_path
from harness.config.update import update_reference
from harness.errors import ConfigError
from harness.verdict.checks import check_reference

in_tmp, gsm8k_knobs = support.in_tmp, support.gsm8k_knobs  # fixtures, used by name


def test_numerics_come_from_args_then_model_defaults(in_tmp):
    thresholds = load_thresholds(write(in_tmp, BASE))
    assert thresholds.numerics("canary", "tp1").describe() == (
        "dtype=bfloat16, quantization=none, kv_cache_dtype=auto, speculative_algorithm=none"
    )
    assert thresholds.numerics("canary", "ngram").describe() == (
        "dtype=float32, quantization=none, kv_cache_dtype=auto, speculative_algorithm=NGRAM"
    )
    assert thresholds.numerics("big", "tp4").dtype == "auto"


def test_first_matching_entry_wins_and_parallelism_does_not_count(in_tmp):
    thresholds = load_thresholds(write(in_tmp, BASE))
    tp1 = thresholds.reference_for("logprob_prefill_cache_hit", "canary", "tp1", "kl_div")
    assert (tp1.index, tp1.path) == (0, "references.logprob_prefill_cache_hit.canary[0]")
    ngram = thresholds.reference_for("logprob_prefill_cache_hit", "canary", "ngram", "kl_div")  # float32, tp2
    assert ngram.index == 1
    assert thresholds.reference_for("gsm8k", "canary", "ngram").test_id == "gsm8k[canary/ngram]"


def test_a_match_checks_through_thresholds(in_tmp):
    thresholds = load_thresholds(write(in_tmp, BASE))
    verdict = check_reference(thresholds.reference_for("logprob_prefill_cache_hit", "canary", "tp1", "kl_div"), 3.1e-3)
    assert verdict.message() == (
        "logprob_prefill_cache_hit[canary/tp1]: kl_div 3.1e-03 > max 1.0e-03"
        " — thresholds.yaml references.logprob_prefill_cache_hit.canary[0]"
    )
    verdict = check_reference(thresholds.reference_for("gsm8k", "canary", "tp1", "accuracy"), 0.995, n=1319)
    assert verdict.passed and verdict.source == "thresholds.yaml references.gsm8k.canary[0]"


def test_no_matching_reference_lists_what_exists(in_tmp):
    thresholds = load_thresholds(write(in_tmp, BASE))
    assert thresholds.find_reference("gsm8k", "canary", "tp1", "invalid_rate") is None
    with pytest.raises(NoReferenceError) as info:
        thresholds.reference_for("gsm8k", "canary", "tp1", "invalid_rate")
    assert str(info.value) == (
        "thresholds.yaml: no reference for gsm8k[canary/tp1] metric invalid_rate (dtype=bfloat16, quantization=none,"
        " kv_cache_dtype=auto, speculative_algorithm=none); entries under references.gsm8k.canary:"
        " [0] accuracy match {} (any); measure and write it from a full run: pytest suites -k"
        ' "test_gsm8k[canary/tp1]" --harness-update-thresholds'
    )
    with pytest.raises(NoReferenceError) as info:
        thresholds.reference_for("spec_accept_length", "canary", "tp1")
    assert "entries under references.spec_accept_length.canary: [0] accept_length match" in str(info.value)
    assert "{speculative_algorithm: NGRAM}" in str(info.value)
    with pytest.raises(NoReferenceError, match=r"references\.gsm8k has no entries for model 'big'"):
        thresholds.reference_for("gsm8k", "big", "tp4")


def test_a_pending_entry_asks_for_a_measurement(in_tmp):
    thresholds = load_thresholds(write(in_tmp, BASE))
    match = thresholds.reference_for("spec_accept_length", "canary", "ngram", "accept_length")
    assert match.entry.pending
    with pytest.raises(NoReferenceError) as info:
        check_reference(match, 1.9)
    assert str(info.value) == (
        "thresholds.yaml references.spec_accept_length.canary[0]: accept_length for spec_accept_length[canary/ngram]"
        " has no measured value yet (pending measurement); measure and write it from a full run: pytest suites -k"
        ' "test_spec_accept_length[canary/ngram]" --harness-update-thresholds'
    )


def test_unknown_names_in_lookups(in_tmp):
    thresholds = load_thresholds(write(in_tmp, BASE))
    with pytest.raises(ConfigError, match=r"unknown config 'tp2' \(did you mean 'tp1'\?\); valid choices: ngram, tp1"):
        thresholds.reference_for("gsm8k", "canary", "tp2")
    with pytest.raises(ConfigError, match=r"unknown suite 'gsm'"):
        thresholds.cases("gsm")


def test_server_specs_and_cases(in_tmp):
    thresholds = load_thresholds(write(in_tmp, BASE))
    spec = thresholds.server_spec("canary", "ngram")
    assert spec.model_path == str(in_tmp.resolve() / "assets/canary/model")
    assert (spec.engine, spec.args, spec.gpus) == ("hf", ("--speculative-algorithm=ngram", "--tp-size", "2"), 0)
    assert thresholds.server_spec("canary", "tp1").engine == "sglang"
    assert thresholds.server_spec("big", "tp4").model_path == "org/Big-Model"
    assert [(s.id, options) for s, options in thresholds.cases("gsm8k")] == [
        ("canary/tp1", {}),
        ("canary/ngram", {}),
        ("big/tp4", {}),
    ]
    assert KNOWN_SUITES[0] == "gsm8k"


def test_suite_options_merge_model_then_config(in_tmp, gsm8k_knobs):
    text = edit("    dtype: float32\n", "    dtype: float32\n    options: {gsm8k: {num_shots: 5, limit: 50}}\n")
    text = edit("        gpus: 1\n", "        gpus: 1\n        options: {gsm8k: {limit: 10}}\n", text)
    thresholds = load_thresholds(write(in_tmp, text))
    assert thresholds.suite_options("canary", "tp1", "gsm8k") == {"num_shots": 5, "limit": 10}
    assert thresholds.suite_options("canary", "ngram", "gsm8k") == {"num_shots": 5, "limit": 50}


def test_model_paths_resolve_against_the_yaml_folder(tmp_path):
    (tmp_path / "weights").mkdir()
    assert resolve_model_path("Qwen/Qwen3-Next-80B-A3B-Instruct", tmp_path) == "Qwen/Qwen3-Next-80B-A3B-Instruct"
    assert resolve_model_path("assets/canary/model", tmp_path) == str(tmp_path / "assets/canary/model")
    assert resolve_model_path("./m", tmp_path) == str(tmp_path / "m")
    assert resolve_model_path("weights", tmp_path) == str(tmp_path / "weights")
    assert resolve_model_path("/abs/model", tmp_path) == "/abs/model"


# -- --harness-update-thresholds --------------------------------------------------------------------


def test_update_rewrites_only_value_and_n(in_tmp):
    path = write(in_tmp, BASE)
    updated = update_reference(path, "gsm8k", "canary", 0, 0.9947, 1000)
    expected = edit("value: 0.99   # measured", "value: 0.9947   # measured", edit("n: 1319", "n: 1000"))
    assert path.read_text() == expected
    entry = updated.doc.references["gsm8k"]["canary"][0]
    assert (entry.value, entry.n) == (0.9947, 1000)


def test_update_fills_a_pending_entry_with_a_small_value(in_tmp):
    path = write(in_tmp, BASE)
    update_reference(path, "spec_accept_length", "canary", 0, 1.93617, 100)
    assert "        value: 1.93617\n        n: 100\n        min_ratio: 0.95\n" in path.read_text()
    assert check_reference(load_thresholds(path).reference_for("spec_accept_length", "canary", "ngram"), 1.9).passed
    update_reference(path, "spec_accept_length", "canary", 0, 1.5e-5)  # n left as it was
    assert "value: 1.5e-05\n        n: 100\n" in path.read_text()
    assert load_thresholds(path).doc.references["spec_accept_length"]["canary"][0].value == 1.5e-5


def test_update_refuses_entries_that_do_not_exist(in_tmp):
    path = write(in_tmp, BASE)
    for suite, model, index in [("gsm8k", "canary", 1), ("gsm8k", "big", 0), ("hf_parity", "canary", 0)]:
        with pytest.raises(ConfigError) as info:
            update_reference(path, suite, model, index, 0.5, 10)
        assert str(info.value) == (
            f"thresholds.yaml: references.{suite}.{model}[{index}] does not exist; create it with pytest suites -k"
            f' "test_{suite}[{model}/<config>]" --harness-update-thresholds'
        )
    assert path.read_text() == BASE


def test_update_refuses_a_bound_set_by_hand(in_tmp):
    path = write(in_tmp, BASE)
    with pytest.raises(ConfigError) as info:
        update_reference(path, "logprob_prefill_cache_hit", "canary", 0, 2e-4, 32)
    assert str(info.value) == (
        "thresholds.yaml: references.logprob_prefill_cache_hit.canary[0] has no 'value' key to update"
        " (a bound: max set by hand); add `value:` to the entry first"
    )
    assert path.read_text() == BASE


def test_update_refuses_a_value_the_schema_rejects(in_tmp):
    path = write(in_tmp, BASE)
    with pytest.raises(ConfigError, match=r"accuracy is a proportion in \[0, 1\], got 99.0"):
        update_reference(path, "gsm8k", "canary", 0, 99.0, 1319)
    assert path.read_text() == BASE


# -- the repository's thresholds.yaml --------------------------------------------------------------


def test_the_repository_file_loads_and_every_metric_suite_has_references(monkeypatch):
    monkeypatch.chdir(REPO)
    thresholds = load_thresholds("thresholds.yaml")
    assert {"qwen3-next-80b", "intern-s2-preview", "llama-3.1-8b", "canary"} <= set(thresholds.doc.models)
    for spec in thresholds.server_specs():
        for suite in thresholds.config(spec.model, spec.config).suites:
            entries = thresholds.doc.references.get(suite, {}).get(spec.model, [])
            if entries and all(e.match.gpu for e in entries):  # per GPU model (serving_perf): a CPU run is recorded
                on_h200 = dataclasses.replace(thresholds, gpu="H200")
                assert spec.gpus == 0 or on_h200.find_reference(suite, spec.model, spec.config) is not None, spec.id
                continue
            assert thresholds.find_reference(suite, spec.model, spec.config) is not None, (suite, spec.id)


def test_every_sglang_config_of_a_committed_tiny_model_bounds_its_kv_pool_in_tokens(monkeypatch):
    # A tiny model under the default memory fraction gets a pool sized by the GPU (1e8 tokens on an H200) and
    # dies of its allocator's bookkeeping (2026-12-01); a token bound runs the same on any GPU.
    monkeypatch.chdir(REPO)
    thresholds = load_thresholds("thresholds.yaml")
    tiny = [s for s in thresholds.server_specs() if s.engine == "sglang" and "/assets/" in f"/{s.model_path}"]
    # canary x7 (pd a deployment), canary-qwen3-next x4, canary-vlm x3 (epd one), qwen3-vl-tiny x1, and the dummy
    # perf-qwen2-7b-shape x1 (its weights are SGLang's, but its 28 layers would take 1e7 tokens' pool too)
    assert len(tiny) == 16
    for spec in tiny:
        assert "--max-total-tokens" in spec.args, spec.id


@pytest.mark.parametrize(
    ("suite", "model", "config", "metric", "index"),
    [
        ("logprob_prefill_cache_hit", "qwen3-next-80b", "tp4-mtp", "kl_div", 0),  # MTP: 0.008
        ("logprob_prefill_cache_hit", "qwen3-next-80b", "tp4-extra-buffer", "kl_div", 1),  # 0.0025
        ("logprob_decode_cache_hit", "canary", "tp1", "kl_div", 0),  # bf16 on SGLang
        ("logprob_decode_cache_hit", "canary", "cpu", "kl_div", 1),  # fp32 on the HF engine
        ("hf_parity", "canary", "tp2", "prompt_logprob_max_diff", 3),
        ("spec_accept_length", "llama-3.1-8b", "tp1-eagle3", "accept_length", 0),
        ("gsm8k", "qwen3-next-80b", "tp4-mtp", "accuracy", 0),
    ],
)
def test_the_repository_file_picks_the_intended_entries(monkeypatch, suite, model, config, metric, index):
    monkeypatch.chdir(REPO)
    assert load_thresholds("thresholds.yaml").reference_for(suite, model, config, metric).index == index


def test_the_repository_qwen3_next_floor_matches_sglangs_ci_floor(monkeypatch):
    # SGLang's CI asserts >= 0.93 on 200 questions; our floor for a full 1319-question run lands there too.
    monkeypatch.chdir(REPO)
    match = load_thresholds("thresholds.yaml").reference_for("gsm8k", "qwen3-next-80b", "tp4", "accuracy")
    verdict = check_reference(match, 0.92, n=1319)
    assert not verdict.passed
    assert verdict.message() == (
        "gsm8k[qwen3-next-80b/tp4]: accuracy 0.920 < floor 0.929 (ref 0.955, n=1319 (ref n=200), σ=0.207,"
        " α=0.05, θ=0.039) — thresholds.yaml references.gsm8k.qwen3-next-80b[0]"
    )
