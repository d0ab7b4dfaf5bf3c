"""Adding a model (issue 35, item 6): `python -m harness init` writes configs for the model's architecture and
references not measured yet; `--harness-update-thresholds` creates or updates the entries from a full run (value,
n, measured σ, a one-line provenance, the per-question file); a limited or smoke run never writes; the "no
reference" errors name that command. (The README's flow end to end: tests/test_readme_add_model.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.config.per_question import read_per_question
from harness.config.scaffold import plan_model, read_architecture, scaffold_model
from harness.config.thresholds import load_thresholds
from harness.config.update import Measured, measured_sigma, refuse_partial_update, write_measurements
from harness.errors import ConfigError, NoReferenceError
from harness.serve.engines import sglang as sg

REPO = Path(__file__).resolve().parents[1]
BASE = """\
models:
  old:
    path: org/old
    configs:
      tp1: {args: [], gpus: 1, suites: [gsm8k]}
references:
  gsm8k:
    old:
      - metric: accuracy
        value: 0.5   # kept comment
        n: 10
        sigma: 0.5
        provenance: by hand
        per_question: refs/gsm8k.old.json
"""
HYBRID_MOE_MTP_VLM = {
    "model_type": "intern_s1",
    "vision_config": {"hidden_size": 8},
    "text_config": {
        "model_type": "qwen3_5_moe",
        "layer_types": ["linear_attention", "full_attention"],
        "num_experts": 64,
        "mtp_num_hidden_layers": 1,
        "torch_dtype": "bfloat16",
    },
}


def write_model(root: Path, config: dict, weight_bytes: int = 0) -> Path:
    model = root / "weights"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(config))
    (model / "model.safetensors").write_bytes(b"\0" * 16)
    return model


def test_a_dense_llm_gets_one_config_with_the_cache_suites():
    plan = plan_model("m", "org/m", read_architecture({"model_type": "llama", "torch_dtype": "bfloat16"}))
    assert plan.configs == {
        "tp1": {
            "args": [],
            "gpus": 1,
            "suites": ["gsm8k", "logprob_prefill_cache_hit", "logprob_decode_cache_hit", "prefix_branching"],
        }
    }


def test_a_hybrid_moe_vlm_with_mtp_gets_every_config_kind():
    arch = read_architecture(HYBRID_MOE_MTP_VLM, weight_bytes=70 * 2**30)
    assert (arch.hybrid, arch.moe, arch.vlm, arch.mtp, arch.dtype) == (True, True, True, True, "bfloat16")
    plan = plan_model("m", "org/m", arch)
    extra_buffer = sg.mamba("extra_buffer", 128)
    assert {name: c["args"] for name, c in plan.configs.items()} == {  # the shapes the real parsers accept
        "tp2": sg.tp(2),
        "tp2-extra-buffer": sg.tp(2) + extra_buffer,
        "tp2-ep2": sg.tp(2) + ["--ep-size", "2"] + extra_buffer,
        "tp2-mtp": sg.tp(2) + sg.mtp(3, 1, 4) + extra_buffer,
    }
    assert plan.configs["tp2"]["suites"] == ["gsm8k", "mmmu", "mm_prefix_cache"]
    assert plan.configs["tp2-extra-buffer"]["suites"] == ["gsm8k", *plan.configs["tp2-extra-buffer"]["suites"][1:]]
    assert "logprob_decode_cache_hit" in plan.configs["tp2-extra-buffer"]["suites"]
    assert plan.configs["tp2-mtp"]["suites"] == ["gsm8k", "spec_accept_length"]


def test_init_writes_a_model_that_loads_with_references_not_measured_yet(tmp_path):
    (tmp_path / "thresholds.yaml").write_text(BASE)
    model = write_model(tmp_path, HYBRID_MOE_MTP_VLM)
    lines = scaffold_model(str(tmp_path / "thresholds.yaml"), str(model), "new-vl")
    assert (
        lines[0]
        == "models.new-vl: qwen3_5_moe (hybrid, moe, vlm, mtp), configs tp1, tp1-extra-buffer, tp2-ep2, tp1-mtp"
    )
    assert (
        lines[-1] == "next: measure its references from a full run: pytest suites -k new-vl --harness-update-thresholds"
    )
    text = (tmp_path / "thresholds.yaml").read_text()
    assert text.startswith(BASE.split("references:")[0]) and "value: 0.5   # kept comment" in text
    thresholds = load_thresholds(tmp_path / "thresholds.yaml")
    assert thresholds.model("new-vl").path == "weights"
    assert thresholds.find_reference("mmmu", "new-vl", "tp1").entry.pending
    assert thresholds.find_reference("spec_accept_length", "new-vl", "tp1-mtp").entry.pending
    with pytest.raises(NoReferenceError) as info:
        from harness.verdict.checks import check_reference

        check_reference(thresholds.find_reference("gsm8k", "new-vl", "tp1"), 0.5, n=10)
    assert str(info.value).endswith(
        'measure and write it from a full run: pytest suites -k "test_gsm8k[new-vl/tp1]" --harness-update-thresholds'
    )
    with pytest.raises(ConfigError, match=r"models\.new-vl already exists; pick another --name"):
        scaffold_model(str(tmp_path / "thresholds.yaml"), str(model), "new-vl")


def test_init_from_the_command_line(tmp_path):
    (tmp_path / "thresholds.yaml").write_text(BASE)
    model = write_model(tmp_path, {"model_type": "qwen2", "torch_dtype": "float32"})
    argv = [sys.executable, "-m", "harness", "init", str(model), "--engine", "hf", "--option", "gsm8k.limit=20"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    model_entry = yaml.safe_load((tmp_path / "thresholds.yaml").read_text())["models"]["weights"]
    assert model_entry["engine"] == "hf" and model_entry["options"] == {"gsm8k": {"limit": 20}}
    assert model_entry["configs"] == {"cpu": {"args": [], "gpus": 0, "suites": ["gsm8k"]}}


def test_the_no_reference_error_names_the_command(tmp_path):
    (tmp_path / "thresholds.yaml").write_text(BASE.replace("suites: [gsm8k]", "suites: [gsm8k, mmmu]"))
    with pytest.raises(NoReferenceError) as info:
        load_thresholds(tmp_path / "thresholds.yaml").reference_for("mmmu", "old", "tp1")
    assert str(info.value).endswith(
        "references.mmmu has no entries for model 'old'; measure and write it from a full run: pytest suites -k"
        ' "test_mmmu[old/tp1]" --harness-update-thresholds'
    )


def test_update_writes_value_n_sigma_provenance_and_the_per_question_file(tmp_path):
    path = tmp_path / "thresholds.yaml"
    path.write_text(BASE)
    answers = {f"q{i}": i % 4 != 0 for i in range(20)}  # 15 of 20
    sigma = measured_sigma("accuracy", 0.75, 20)
    assert sigma == pytest.approx((0.75 * 0.25 * 20 / 19) ** 0.5)  # the sample sd of the 0/1 scores
    lines = write_measurements(path, ("gsm8k", "old", "tp1"), [Measured("accuracy", 0.75, 20, sigma, answers)], "run r")
    assert lines == [
        "gsm8k[old/tp1]: wrote accuracy=0.75 (n=20, σ=0.444) and 20 answers into refs/gsm8k.old.json into"
        " references.gsm8k.old[0]"
    ]
    assert path.read_text() == BASE.replace("value: 0.5   #", "value: 0.75   #").replace("n: 10", "n: 20").replace(
        "sigma: 0.5", "sigma: 0.444"
    ).replace("provenance: by hand", "provenance: run r")
    assert read_per_question(tmp_path / "refs" / "gsm8k.old.json").answers == answers


def test_update_creates_the_entries_of_a_suite_that_has_none(tmp_path):
    path = tmp_path / "thresholds.yaml"
    path.write_text(BASE.replace("suites: [gsm8k]", "suites: [gsm8k, prefix_branching, mmmu]"))
    measured = [Measured("accuracy", 1.0, 30, measured_sigma("accuracy", 1.0, 30)), Measured("unparsed_rate", 0, 30)]
    lines = write_measurements(path, ("mmmu", "old", "tp1"), measured, "measured today")
    assert lines == ["mmmu[old/tp1]: created references.mmmu.old[0] accuracy=1 (n=30)"]
    assert path.read_text().endswith(
        "  mmmu:\n    old:\n      - metric: accuracy\n        value: 1.0\n        n: 30\n        sigma: 0.126\n"
        "        provenance: measured today\n"
    )  # a perfect run's σ from (k + ½)/(n + 1), never 0
    lines = write_measurements(path, ("prefix_branching", "old", "tp1"), [Measured("branch_mismatches", 0, 4)], "x")
    assert lines == ["prefix_branching[old/tp1]: created references.prefix_branching.old[0] branch_mismatches"]
    assert load_thresholds(path).find_reference("prefix_branching", "old", "tp1").entry.max == 0


def test_a_limited_or_smoke_run_never_writes_a_reference(tmp_path):
    refuse_partial_update(True, None, False)
    refuse_partial_update(False, 30, True)
    with pytest.raises(ConfigError) as info:
        refuse_partial_update(True, 30, False)
    assert str(info.value) == (
        "--harness-update-thresholds refuses to write references from a limited run (--harness-limit 30): a reference"
        " is measured on the full question set; run again without --harness-limit 30"
    )
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    (tmp_path / "thresholds.yaml").write_text(BASE)
    (tmp_path / "suites").mkdir()
    argv = [sys.executable, "-m", "pytest", "suites", "-p", "no:cacheprovider", "--harness-update-thresholds"]
    done = subprocess.run([*argv, "--harness-smoke"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stdout + done.stderr
    assert (
        "ERROR: --harness-update-thresholds refuses to write references from a smoke run (--harness-smoke): a"
        " reference is measured on the full question set; run again without --harness-smoke"
    ) in done.stderr
    assert (tmp_path / "thresholds.yaml").read_text() == BASE and not (tmp_path / "reports").exists()
