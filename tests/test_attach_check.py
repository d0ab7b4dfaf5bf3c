"""Attach mode compares the server with the config (harness.serve.attach_check): the pure comparison, then real
inner pytest runs attached to a real HF engine whose page size, TP size and speculative algorithm differ from a
config's."""

from __future__ import annotations

import pytest
from inner_run_support import assert_clean, run_inner, write_project

from harness.config.spec import ServerSpec
from harness.serve.attach_check import ServerMismatch, compare_server, model_name
from harness.serve.engines import get_engine
from harness.serve.server import LifecycleOptions, Server

# What SGLang 0.5.17's /server_info reports for a tp1, page-1, non-speculative launch (the fields compared).
SGLANG_TP1 = {
    "model_path": "/models/Llama-3.1-8B-Instruct",
    "tp_size": 1,
    "dp_size": 1,
    "pp_size": 1,
    "ep_size": 1,
    "page_size": 1,
    "speculative_algorithm": None,
    "mamba_radix_cache_strategy": "auto",
    "dtype": "auto",
    "disable_radix_cache": False,
    "enable_multimodal": None,
}


def spec(*args: str, config: str = "tp2-page16", **kw) -> ServerSpec:
    return ServerSpec("canary", config, kw.pop("model_path", "meta-llama/Llama-3.1-8B-Instruct"), args=args, **kw)


def test_a_declared_tp2_page16_eagle3_config_fails_on_a_tp1_page1_server_naming_each_field():
    declared = spec("--tp-size", "2", "--page-size=16", "--speculative-algorithm", "EAGLE3", "--dtype", "bfloat16")
    check = compare_server(declared, {**SGLANG_TP1, "dtype": "bfloat16"}, {})
    with pytest.raises(ServerMismatch) as raised:
        check.raise_for_differences()
    assert str(raised.value) == (
        "canary/tp2-page16: attached server differs from the config: tp_size declared 2, served 1; "
        "page_size declared 16, served 1; speculative_algorithm declared EAGLE3, served none"
    )
    assert check.checked == ["dp_size", "pp_size", "dtype", "disable_radix_cache", "model_path"]
    assert check.unchecked == []


def test_flags_a_config_leaves_out_are_sglangs_defaults():
    served = {
        **SGLANG_TP1,
        "tp_size": 4,
        "page_size": 64,
        "speculative_algorithm": "EAGLE",
        "disable_radix_cache": True,
    }
    assert compare_server(spec(config="tp1"), served, {}).line == (
        "attached server differs from the config: tp_size declared 1 (the default), served 4; page_size declared 1 "
        "(the default), served 64; speculative_algorithm declared none (the default), served EAGLE; "
        "disable_radix_cache declared false (the default), served true"
    )


def test_spellings_that_mean_the_same_match():
    declared = spec(
        "--tensor-parallel-size=4",
        "--speculative-algo",
        "nextn",  # SGLang runs NEXTN as EAGLE and reports EAGLE
        "--mamba-scheduler-strategy",  # the old flag name
        "extra_buffer",
        "--dtype",
        "bf16",
        "--disable-radix-cache",
    )
    served = {
        **SGLANG_TP1,
        "tp_size": 4,
        "speculative_algorithm": "EAGLE",
        "mamba_radix_cache_strategy": "extra_buffer",
        "dtype": "bfloat16",
        "disable_radix_cache": True,
    }
    check = compare_server(declared, served, {})
    assert check.differences == [] and check.unchecked == []
    old_key = {k: v for k, v in served.items() if k != "mamba_radix_cache_strategy"}
    assert compare_server(declared, {**old_key, "mamba_scheduler_strategy": "extra_buffer"}, {}).differences == []


def test_fields_sglang_derives_are_compared_only_when_the_config_sets_them():
    served = {**SGLANG_TP1, "ep_size": 8, "dtype": "bfloat16", "mamba_radix_cache_strategy": "no_buffer"}
    assert compare_server(spec(), served, {}).differences == []  # DeepEP's ep, auto dtype, auto strategy
    declared = spec("--ep-size", "2", "--dtype", "float16", "--mamba-radix-cache-strategy", "extra_buffer")
    assert compare_server(declared, served, {}).differences == [
        "ep_size declared 2, served 8",
        "mamba_radix_cache_strategy declared extra_buffer, served no_buffer",
        "dtype declared float16, served bfloat16",
    ]


def test_fields_the_server_does_not_report_are_listed_as_unchecked():
    check = compare_server(spec("--enable-multimodal", "--mamba-radix-cache-strategy", "extra_buffer"), {}, {})
    assert check.differences == [] and check.checked == []
    assert check.unchecked == [
        "tp_size",
        "dp_size",
        "pp_size",
        "page_size",
        "speculative_algorithm",
        "mamba_radix_cache_strategy",
        "disable_radix_cache",
        "enable_multimodal",
        "model_path",
    ]
    assert check.note == (
        "attached server: not reported, so not compared with the config: tp_size, dp_size, pp_size, page_size, "
        "speculative_algorithm, mamba_radix_cache_strategy, disable_radix_cache, enable_multimodal, model_path"
    )
    assert check.record() == {"checked": [], "unchecked": check.unchecked, "differences": []}


@pytest.mark.parametrize(
    ("declared", "served", "same"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "/models/Llama-3.1-8B-Instruct", True),
        ("Qwen/Qwen3-8B", "/root/.cache/huggingface/hub/models--Qwen--Qwen3-8B/snapshots/0123abc", True),
        ("/work/assets/canary/model/", "assets/canary/model", True),
        ("Qwen/Qwen3-8B", "Qwen/Qwen3-8B-FP8", False),
    ],
)
def test_the_model_is_compared_by_its_directory_name(declared, served, same):
    assert (model_name(declared) == model_name(served)) is same
    check = compare_server(spec(model_path=declared), {**SGLANG_TP1, "model_path": served}, {})
    assert check.differences == ([] if same else [f"model_path declared {declared}, served {served}"])


def test_a_config_that_sends_images_needs_a_server_that_reads_them():
    vlm = spec(images_per_prompt=7)
    assert compare_server(vlm, SGLANG_TP1, {"has_image_understanding": False}).differences == [
        "has_image_understanding declared true, served false"
    ]
    assert compare_server(vlm, SGLANG_TP1, {"has_image_understanding": True}).differences == []
    assert "has_image_understanding" in compare_server(vlm, SGLANG_TP1, {}).unchecked


def test_a_deployment_compares_only_what_its_shared_args_set():
    pd = spec("--dtype", "bfloat16", deployment=object())  # members add their own args; the router answers
    served = {**SGLANG_TP1, "tp_size": 2, "dtype": "bfloat16"}
    assert compare_server(pd, served, {}).differences == []
    assert compare_server(pd, {**served, "dtype": "float16"}, {}).differences == [
        "dtype declared bfloat16, served float16"
    ]


# -- real runs: a real HF engine attached to ---------------------------------------------------------------------
# The inner-run project's file (inner_run_support.THRESHOLDS) with two configs instead of its one.
CONFIGS = """\
      tp2-eagle3:
        args: [--tp-size, "2", --speculative-algorithm, EAGLE3]
        suites: [gsm8k, logprob_prefill_cache_hit, prefix_branching]
      page16:
        args: [--page-size, "16", --mamba-radix-cache-strategy, no_buffer]
        suites: [gsm8k]
"""
ONE_CONFIG = """\
      cfg:
        args: []
        suites: [gsm8k, logprob_prefill_cache_hit, prefix_branching]
"""
MISMATCH = (
    "attached server differs from the config: tp_size declared 2, served 1; page_size declared 1 (the default), "
    "served 16; speculative_algorithm declared EAGLE3, served none"
)


@pytest.fixture(scope="module")
def engine_page16(tiny_model, tmp_path_factory):
    """The HF engine at page size 16 (tp 1, not speculative), launched as someone else would have."""
    served = ServerSpec("tiny", "upstream", str(tiny_model), engine="hf", args=("--page-size", "16"))
    options = LifecycleOptions(grace_period=10)
    with Server(served, get_engine("hf"), log_dir=tmp_path_factory.mktemp("upstream"), options=options) as server:
        yield server


def test_an_attached_server_unlike_its_config_fails_every_test_of_that_config(tmp_path, tiny_model, engine_page16):
    write_project(tmp_path, tiny_model)
    text = (tmp_path / "thresholds.yaml").read_text()
    assert ONE_CONFIG in text
    (tmp_path / "thresholds.yaml").write_text(text.replace(ONE_CONFIG, CONFIGS))
    run = run_inner(tmp_path, "--harness-base-url", engine_page16.base_url)
    lines = {line.strip() for line in run.output.splitlines()}
    rows = {(row["suite"], row["case"]): row for row in run.results["tests"]}
    for suite in ("gsm8k", "logprob_prefill_cache_hit", "prefix_branching"):
        assert f"{suite}[tiny/tp2-eagle3]: ERROR: {MISMATCH}" in lines, run.output[-3000:]
        assert rows[suite, "tiny/tp2-eagle3"]["verdict"] == "error"
        assert rows[suite, "tiny/tp2-eagle3"]["error"] == f"{suite}[tiny/tp2-eagle3]: {MISMATCH}"
    assert run.samples.get("gsm8k__tiny__tp2-eagle3.jsonl", 0) == 0  # nothing was asked of the wrong server
    # The config that matches runs, and says which declared field the server does not report.
    matching = rows["gsm8k", "tiny/page16"]
    assert matching["verdict"] == "pass"
    assert matching["notes"] == [
        "gsm8k[tiny/page16]: attached server: not reported, so not compared with the config: mamba_radix_cache_strategy"
    ]
    assert run.results["servers"]["tiny/page16"]["attach_check"] == {
        "checked": [
            "tp_size",
            "dp_size",
            "pp_size",
            "page_size",
            "speculative_algorithm",
            "disable_radix_cache",
            "model_path",
        ],
        "unchecked": ["mamba_radix_cache_strategy"],
        "differences": [],
    }
    assert "tiny/tp2-eagle3" not in run.results["servers"]
    assert run.returncode == 1
    assert_clean(run)
    engine_page16.check_alive()  # attached: neither launched nor stopped
