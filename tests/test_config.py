"""thresholds.yaml: loading, the exact messages for malformed files, reference selection, in-place updates."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.config import suites as config_options
from harness.config.thresholds import KNOWN_SUITES, NoReferenceError, load_thresholds, resolve_model_path
from harness.config.update import update_reference
from harness.errors import ConfigError
from harness.verdict.checks import check_reference

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


# -- malformed files: the messages are pinned -----------------------------------------------------

KL_DEFAULT = "{metric: kl_div, max: 1.0e-6, provenance: test}"

# (what the test breaks, text replaced in BASE, its replacement, the exact message)
MALFORMED = [
    (
        "unknown suite in a config",
        "suites: [gsm8k, logprob_prefill_cache_hit]",
        "suites: [gsm8kk, logprob_prefill_cache_hit]",
        "thresholds.yaml: models.canary.configs.tp1.suites[0]: unknown suite 'gsm8kk' (did you mean 'gsm8k'?);"
        f" valid choices: {SUITE_CHOICES}",
    ),
    (
        "suite listed twice",
        "suites: [gsm8k, spec_accept_length]",
        "suites: [gsm8k, spec_accept_length, gsm8k]",
        "thresholds.yaml: models.canary.configs.ngram.suites[2]: suite 'gsm8k' listed twice",
    ),
    (
        "unknown key",
        "        gpus: 1\n",
        "        gpuss: 1\n",
        "thresholds.yaml: models.canary.configs.tp1: unknown key 'gpuss' (did you mean 'gpus'?);"
        " valid choices: args, deployment, description, engine, env, gpus, options, startup_timeout, suites",
    ),
    (
        "wrong type",
        "gpus: 1",
        "gpus: two",
        "thresholds.yaml: models.canary.configs.tp1.gpus: expected an integer, got 'two'",
    ),
    (
        "a string where a list belongs",
        "suites: [gsm8k]",
        "suites: gsm8k",
        "thresholds.yaml: models.big.configs.tp4.suites: expected a list, got 'gsm8k'",
    ),
    ("negative gpus", "gpus: 1", "gpus: -1", "thresholds.yaml: models.canary.configs.tp1.gpus: must be ≥ 0, got -1"),
    (
        "unknown engine",
        "engine: sglang",
        "engine: sgl",
        "thresholds.yaml: models.canary.configs.tp1.engine: unknown engine 'sgl' (did you mean 'sglang'?);"
        " valid choices: hf, sglang, vllm",
    ),
    ("missing model path", "    path: org/Big-Model\n", "", "thresholds.yaml: models.big: missing required key 'path'"),
    (
        "missing provenance",
        "        provenance: pending measurement\n",
        "",
        "thresholds.yaml: references.spec_accept_length.canary[0]: missing required key 'provenance'",
    ),
    (
        "reference naming a missing model",
        "  gsm8k:\n    canary:",
        "  gsm8k:\n    canry:",
        "thresholds.yaml: references.gsm8k.canry: unknown model 'canry' (did you mean 'canary'?);"
        " valid choices: big, canary",
    ),
    (
        "reference under an unknown suite",
        "  spec_accept_length:\n    canary:",
        "  spec_accept_lenght:\n    canary:",
        "thresholds.yaml: references.spec_accept_lenght: unknown suite 'spec_accept_lenght'"
        f" (did you mean 'spec_accept_length'?); valid choices: {SUITE_CHOICES}",
    ),
    (
        "unknown speculative algorithm in a match",
        "speculative_algorithm: NGRAM",
        "speculative_algorithm: NGRM",
        "thresholds.yaml: references.spec_accept_length.canary[0].match.speculative_algorithm:"
        " unknown speculative algorithm 'NGRM' (did you mean 'NGRAM'?);"
        " valid choices: DFLASH, DSPARK, EAGLE, EAGLE3, NEXTN, NGRAM, STANDALONE, SUFFIX, none",
    ),
    (
        "unknown suite option knob",
        "        gpus: 1\n",
        "        gpus: 1\n        options: {gsm8k: {num_shot: 5}}\n",
        "thresholds.yaml: models.canary.configs.tp1.options.gsm8k: unknown key 'num_shot' (did you mean 'num_shots'?);"
        " valid choices: limit, mode, num_shots",
    ),
    (
        "suite option knob of the wrong kind",
        "        gpus: 1\n",
        "        gpus: 1\n        options: {gsm8k: {num_shots: five}}\n",
        "thresholds.yaml: models.canary.configs.tp1.options.gsm8k.num_shots: expected an integer like the default 5,"
        " got 'five'",
    ),
    (
        "options for an unknown suite",
        "    dtype: float32\n",
        "    dtype: float32\n    options: {gsm8kk: {num_shots: 5}}\n",
        "thresholds.yaml: models.canary.options: unknown suite 'gsm8kk' (did you mean 'gsm8k'?);"
        f" valid choices: {SUITE_CHOICES}",
    ),
    (
        "options for a suite the config does not run",
        "        gpus: 1\n",
        "        gpus: 1\n        options: {prefix_branching: {suffix_length: 8}}\n",
        "thresholds.yaml: models.canary.configs.tp1.options.prefix_branching: options for suite 'prefix_branching',"
        " which this config does not run (its suites: gsm8k, logprob_prefill_cache_hit)",
    ),
    (
        "duplicate config name, with both lines",
        "      ngram:\n",
        "      tp1:\n",
        "thresholds.yaml:12: models.canary.configs: duplicate key 'tp1' (first defined on line 7)",
    ),
    (
        "invalid model name",
        "  big:\n",
        "  'big model':\n",
        "thresholds.yaml: models.big model: invalid model name 'big model': use letters, digits, '.', '_' and '-'"
        " (it appears in test ids like gsm8k[model/config])",
    ),
    (
        "statistical entry without sigma",
        "        sigma: 0.5\n",
        "",
        "thresholds.yaml: references.gsm8k.canary[0]: missing required key 'sigma' for a statistical entry"
        " (the per-sample standard deviation; 0.5 is the Bernoulli worst case), or give max/min for a plain bound",
    ),
    (
        "bound entry with statistical keys",
        KL_DEFAULT,
        "{metric: kl_div, max: 1e-6, sigma: 0.1, provenance: t}",
        "thresholds.yaml: references.logprob_prefill_cache_hit.canary[1]: sigma only apply to statistical entries"
        " (value, n, sigma); this entry is a bound (max)",
    ),
    (
        "bound in the wrong direction",
        KL_DEFAULT,
        "{metric: kl_div, min: 1.0e-6, provenance: test}",
        "thresholds.yaml: references.logprob_prefill_cache_hit.canary[1]: kl_div is lower-is-better,"
        " so its bound is a max, not min",
    ),
    (
        "value without n",
        "        n: 1319\n",
        "",
        "thresholds.yaml: references.gsm8k.canary[0]: give value and n together"
        " (both null marks a reference not measured yet)",
    ),
    (
        "proportion out of range",
        "value: 0.99",
        "value: 99.0",
        "thresholds.yaml: references.gsm8k.canary[0].value: accuracy is a proportion in [0, 1], got 99.0",
    ),
    (
        "an entry shadowed by an earlier one",
        "      - {metric: kl_div, max: 1.0e-3, match: {dtype: bf16}, provenance: test}\n      - " + KL_DEFAULT,
        "      - " + KL_DEFAULT + "\n      - {metric: kl_div, max: 1.0e-3, match: {dtype: bf16}, provenance: test}",
        "thresholds.yaml: references.logprob_prefill_cache_hit.canary[1]: can never match:"
        " references.logprob_prefill_cache_hit.canary[0] (kl_div, match {} (any)) already matches every config"
        " it would; put the more specific entry first",
    ),
]


@pytest.fixture
def gsm8k_knobs(monkeypatch):
    """Knob checks read each eval's OPTIONS; pin gsm8k's here so these messages do not follow its edits."""
    real = config_options.suite_option_defaults
    fake = {"num_shots": 5, "limit": None, "mode": "native"}
    pinned = lambda suite: fake if suite == "gsm8k" else real(suite)  # noqa: E731
    monkeypatch.setattr(config_options, "suite_option_defaults", pinned)


@pytest.mark.parametrize(("old", "new", "message"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_file_message(in_tmp, gsm8k_knobs, old, new, message):
    assert error_of(in_tmp, edit(old, new)) == message


def test_a_misspelt_serving_perf_knob_names_the_right_one(in_tmp):
    text = edit("suites: [gsm8k]", "suites: [gsm8k, serving_perf]\n        options: {serving_perf: {repeat: 1}}")
    assert error_of(in_tmp, text) == (
        "thresholds.yaml: models.big.configs.tp4.options.serving_perf: unknown key "
        "'repeat' (did you mean 'repeats'?); valid choices: bench_serving, "
        "bench_serving_prompts, client_cpu_budget, client_lag_budget_ms, client_processes, connections, flush_cache, repeats, "
        "request_timeout_s, seed, settle_s, workloads"
    )


def test_unknown_metric(in_tmp):
    assert error_of(in_tmp, edit("metric: accuracy", "metric: acuracy")).startswith(
        "thresholds.yaml: references.gsm8k.canary[0].metric: unknown metric 'acuracy' (did you mean 'accuracy'?);"
        " valid choices: accept_length, accuracy, accuracy_gap, accuracy_strict,"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {}\nmodels: {}\n", "thresholds.yaml:2: top level: duplicate key 'models' (first defined on line 1)"),
        (
            "models:\n  canary: [unclosed\n",
            "thresholds.yaml:3: invalid YAML: expected ',' or ']', but got '<stream end>'",
        ),
        ("", "thresholds.yaml: the file is empty; it needs at least a 'models' mapping"),
        ("- a\n", "thresholds.yaml: top level: expected a mapping with 'models' and 'references', got ['a']"),
        (
            "model:\n  x: 1\n",
            "thresholds.yaml: top level: missing required key 'models'\n"
            "thresholds.yaml: top level: unknown key 'model' (did you mean 'models'?);"
            " valid choices: error_control, models, references",
        ),
    ],
    ids=["duplicate top-level key", "invalid YAML", "empty file", "top level is a list", "misspelt models"],
)
def test_whole_file_problems(in_tmp, text, message):
    assert error_of(in_tmp, text) == message


def test_missing_file(in_tmp):
    with pytest.raises(ConfigError, match=r"^nope.yaml: file not found \(looked in "):
        load_thresholds("nope.yaml")


def test_every_problem_is_reported_at_once(in_tmp):
    text = edit("suites: [gsm8k]", "suites: [gsm8k, perff]", edit("  gsm8k:\n    canary:", "  gsm8k:\n    canry:"))
    lines = error_of(in_tmp, text).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("thresholds.yaml: models.big.configs.tp4.suites[1]: unknown suite 'perff'")
    assert lines[1].startswith("thresholds.yaml: references.gsm8k.canry: unknown model 'canry'")


# -- a valid file: numerics, references, server specs ---------------------------------------------


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
        " [0] accuracy match {} (any); add a matching entry (first match wins), or run with --harness-no-reference"
        " to record values"
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
        " has no measured value yet (pending measurement); record one with --harness-no-reference, then write it"
        " with --harness-update-thresholds"
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
            f"thresholds.yaml: references.{suite}.{model}[{index}] does not exist; add an entry to thresholds.yaml"
            " first (metric, value: null, n: null, sigma, match, provenance), then run"
            " --harness-update-thresholds again"
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


def test_a_reference_config_that_does_not_exist_names_the_configs(in_tmp):
    text = edit(
        "    dtype: float32\n    configs:", "    dtype: float32\n    reference_config: [tp1, ngramm]\n    configs:"
    )
    assert error_of(in_tmp, text) == (
        "thresholds.yaml: models.canary.reference_config[1]: unknown config 'ngramm' "
        "(did you mean 'ngram'?); valid choices: ngram, tp1"
    )
