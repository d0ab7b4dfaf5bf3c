"""thresholds.yaml: the exact messages for malformed files (tests/config_support.py's BASE, broken one way at a
time), for problems with the whole file, and every problem reported at once.
"""

from __future__ import annotations

import config_support as support
import pytest
from config_support import SUITE_CHOICES, edit, error_of

from harness.config.thresholds import load_thresholds
from harness.errors import ConfigError

in_tmp, gsm8k_knobs = support.in_tmp, support.gsm8k_knobs  # fixtures, used by name

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


@pytest.mark.parametrize(("old", "new", "message"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_file_message(in_tmp, gsm8k_knobs, old, new, message):
    assert error_of(in_tmp, edit(old, new)) == message


def test_a_misspelt_serving_perf_knob_names_the_right_one(in_tmp):
    text = edit("suites: [gsm8k]", "suites: [gsm8k, serving_perf]\n        options: {serving_perf: {repeat: 1}}")
    assert error_of(in_tmp, text) == (
        "thresholds.yaml: models.big.configs.tp4.options.serving_perf: unknown key "
        "'repeat' (did you mean 'repeats'?); valid choices: bench_serving, "
        "bench_serving_prompts, client_cpu_budget, client_lag_budget_ms, client_processes, connections, "
        "flush_cache, repeats, "
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


def test_a_reference_config_that_does_not_exist_names_the_configs(in_tmp):
    text = edit(
        "    dtype: float32\n    configs:", "    dtype: float32\n    reference_config: [tp1, ngramm]\n    configs:"
    )
    assert error_of(in_tmp, text) == (
        "thresholds.yaml: models.canary.reference_config[1]: unknown config 'ngramm' "
        "(did you mean 'ngram'?); valid choices: ngram, tp1"
    )
