"""One launch line of every config kind through the real parser of each pinned SGLang release.

Needs HARNESS_SGLANG_SITES="0.5.17=DIR:0.5.23=DIR", each DIR a `pip install --no-deps --target DIR
sglang==V`; `tox -e sglang` builds them (tests/sglang_env/install_sites.py, with requirements.txt beside it
for the light packages the parsers import). The preflight runs as a subprocess with PYTHONPATH=DIR, under
HARNESS_SGLANG_PYTHON (default: this interpreter), once per version for all lines (`--batch`: importing
SGLang's server_args takes seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.serve.engines import sglang as sg

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = REPO / "thresholds.yaml"
PINNED = ("0.5.17", "0.5.23")
MODEL = "Qwen/Qwen3-Next-80B-A3B-Instruct"

# kind -> (args, fields SGLang's parser must have set from them)
KINDS: dict[str, tuple[list[str], dict]] = {
    "tp": (sg.tp(4), {"tp_size": 4}),
    "dp": (sg.tp(2) + sg.dp(2), {"tp_size": 2, "dp_size": 2}),
    "ep-dp-attention": (
        sg.tp(8) + sg.ep_dp_attention(8, 8),
        {"tp_size": 8, "ep_size": 8, "dp_size": 8, "enable_dp_attention": True, "moe_a2a_backend": "deepep"},
    ),
    "pp": (sg.pp(2), {"pp_size": 2}),
    "eagle": (
        sg.eagle("lmsys/sglang-EAGLE-llama2-chat-7B", 3, 1, 4),
        {
            "speculative_algorithm": "EAGLE",
            "speculative_draft_model_path": "lmsys/sglang-EAGLE-llama2-chat-7B",
            "speculative_num_steps": 3,
            "speculative_eagle_topk": 1,
            "speculative_num_draft_tokens": 4,
        },
    ),
    "eagle3": (
        sg.eagle("lmsys/sglang-EAGLE3-LLaMA3.1-Instruct-8B", 5, 4, 8, algorithm="EAGLE3"),
        {"speculative_algorithm": "EAGLE3", "speculative_num_steps": 5, "speculative_eagle_topk": 4},
    ),
    "mtp": (sg.mtp(1, 1, 2), {"speculative_algorithm": "NEXTN", "speculative_num_draft_tokens": 2}),
    "ngram": (sg.ngram(4), {"speculative_algorithm": "NGRAM", "speculative_num_draft_tokens": 4}),
    "mamba-extra-buffer": (
        sg.mamba("extra_buffer", 128),
        {"mamba_radix_cache_strategy": "extra_buffer", "mamba_track_interval": 128},
    ),
    "mamba-no-buffer": (
        sg.mamba("no_buffer"),
        {"mamba_radix_cache_strategy": "no_buffer", "disable_overlap_schedule": True},
    ),
    "page-size": (sg.page_size(16), {"page_size": 16}),
}
OLD_MAMBA = ["--mamba-scheduler-strategy", "extra_buffer"]
BAD_CHOICE = ["--moe-a2a-backend", "deepepp"]
PINNED_0_5_23_MESSAGE = (
    "qwen3-next/mamba-old-flag: SGLang 0.5.23 does not accept '--mamba-scheduler-strategy' "
    "(did you mean '--mamba-radix-cache-strategy'?); `python -m sglang.launch_server --help` lists its flags"
)


def sites() -> dict[str, str]:
    raw = os.environ.get("HARNESS_SGLANG_SITES", "")
    pairs = [entry.split("=", 1) for entry in raw.split(os.pathsep) if "=" in entry]
    return {version.strip(): path.strip() for version, path in pairs}


pytestmark = pytest.mark.skipif(
    not sites(),
    reason="HARNESS_SGLANG_SITES is not set: set it to '0.5.17=DIR:0.5.23=DIR', each DIR a "
    "`pip install --no-deps --target DIR sglang==V` (tox -e sglang does this: tests/sglang_env/install_sites.py)",
)


def site_for(version: str) -> str:
    path = sites().get(version)
    if path is None:
        pytest.skip(f"HARNESS_SGLANG_SITES has no entry for sglang {version} (has: {', '.join(sites()) or 'none'})")
    if not Path(path, "sglang").is_dir():
        pytest.fail(f"HARNESS_SGLANG_SITES: {path} (sglang {version}) holds no sglang package")
    return path


def run_preflight(version: str, cli_args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([site_for(version), str(REPO)])}
    python = os.environ.get("HARNESS_SGLANG_PYTHON") or sys.executable
    return subprocess.run(
        [python, "-m", "harness.serve.engines.preflight", *cli_args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def batch_results(tmp_path_factory):
    """Every line of this module, per version, through one preflight process per version."""
    cache: dict[str, dict[str, dict]] = {}

    def results(version: str) -> dict[str, dict]:
        if version not in cache:
            lines = {kind: (MODEL, args) for kind, (args, _) in KINDS.items()}
            lines |= {"old-mamba": (MODEL, OLD_MAMBA), "bad": (MODEL, BAD_CHOICE)}
            lines |= {spec.id: (spec.model_path, list(spec.args)) for spec in thresholds_sglang_specs()}
            lines |= {name: (MODEL, args) for name, args in scaffolded_lines().items()}
            batch = tmp_path_factory.mktemp(f"batch-{version}") / "lines.json"
            where = {kind: f"qwen3-next/{kind}" for kind in KINDS} | {
                "old-mamba": "qwen3-next/old-mamba",
                "bad": "qwen3-next/bad",
            }
            batch.write_text(
                json.dumps(
                    [
                        {"model_path": m, "args": a, "where": where.get(k, f"thresholds.yaml: {k}")}
                        for k, (m, a) in lines.items()
                    ]
                )
            )
            done = run_preflight(version, ["--batch", str(batch)])
            assert done.returncode == 0, f"preflight under sglang {version} failed:\n{done.stderr[-4000:]}"
            cache[version] = dict(zip(lines, json.loads(done.stdout.strip().splitlines()[-1])))
        return cache[version]

    return results


@pytest.mark.parametrize("version", PINNED)
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_parses(batch_results, version, kind):
    result = batch_results(version)[kind]
    assert result.get("ok"), result.get("error")
    assert result["sglang_version"] == version
    expected = KINDS[kind][1]
    assert {key: result["parsed"].get(key) for key in expected} == expected
    assert result["parsed"]["model_path"] == MODEL


def thresholds_sglang_specs():
    """Every sglang launch line of thresholds.yaml: a config's, or each SGLang member's of a deployment."""
    from harness.config.thresholds import load_thresholds
    from harness.serve.deployment.plan import launch_lines

    lines = []
    for spec in load_thresholds(THRESHOLDS).server_specs():
        lines += launch_lines(spec) if spec.deployment is not None else [spec]
    return [line for line in lines if line.engine == "sglang"]


def scaffolded_lines() -> dict[str, list[str]]:
    """Every config `python -m harness init` writes for a hybrid MoE VLM with MTP layers (all four config kinds)."""
    from harness.config.scaffold import plan_model, read_architecture

    config = {
        "vision_config": {},
        "text_config": {"model_type": "qwen3_next", "num_experts": 8, "num_nextn_predict_layers": 1},
    }
    plan = plan_model("new", MODEL, read_architecture(config, weight_bytes=100 * 2**30))
    return {f"scaffold/{name}": c["args"] for name, c in plan.configs.items()}


@pytest.mark.parametrize("version", PINNED)
def test_every_scaffolded_launch_line_parses(batch_results, version):
    results = batch_results(version)
    lines = scaffolded_lines()
    assert sorted(lines) == ["scaffold/tp4", "scaffold/tp4-ep4", "scaffold/tp4-extra-buffer", "scaffold/tp4-mtp"]
    assert {name: results[name].get("error") for name in lines} == {name: None for name in lines}
    assert results["scaffold/tp4-mtp"]["parsed"]["speculative_algorithm"] == "NEXTN"
    assert results["scaffold/tp4-ep4"]["parsed"]["ep_size"] == 4


@pytest.mark.parametrize("version", PINNED)
def test_every_sglang_config_in_thresholds_yaml_parses(batch_results, version):
    """The launch lines the suites will really use, checked before any GPU job starts."""
    results = batch_results(version)
    specs = thresholds_sglang_specs()
    assert specs, "thresholds.yaml declares no sglang config"
    rejected = [results[spec.id]["error"] for spec in specs if not results[spec.id]["ok"]]
    assert rejected == []
    members = {spec.id: results[spec.id]["parsed"] for spec in specs if "." in spec.config}  # deployment members
    assert members["canary-vlm/epd.encoder"]["encoder_only"] is True
    assert members["canary-vlm/epd.language"]["language_only"] is True
    assert members["canary-vlm/epd.language"]["encoder_urls"] == ["http://127.0.0.1:1"]
    assert members["canary/pd.prefill"]["disaggregation_mode"] == "prefill"
    assert members["canary/pd.decode"]["disaggregation_mode"] == "decode"


def test_0_5_23_flags_dp_attention_as_deprecated(batch_results):
    warnings = batch_results("0.5.23")["ep-dp-attention"]["warnings"]
    assert any("'--enable-dp-attention' is deprecated" in w and "--attn-dp-size" in w for w in warnings), warnings


def test_0_5_17_accepts_the_old_mamba_flag_as_a_deprecated_alias(batch_results):
    result = batch_results("0.5.17")["old-mamba"]
    assert result["ok"], result.get("error")
    assert result["parsed"]["mamba_radix_cache_strategy"] == "extra_buffer"
    assert result["warnings"] == [
        (
            "'--mamba-scheduler-strategy' is deprecated and will be removed in a future release. "
            "Use '--mamba-radix-cache-strategy' instead."
        )
    ]


def test_0_5_23_rejects_the_old_mamba_flag_with_a_did_you_mean(batch_results):
    result = batch_results("0.5.23")["old-mamba"]
    assert not result["ok"]
    assert result["error"] == PINNED_0_5_23_MESSAGE.replace("mamba-old-flag", "old-mamba")
    assert result["flag"] == "--mamba-scheduler-strategy"


@pytest.mark.parametrize("version", PINNED)
def test_bad_choice_names_the_valid_ones(batch_results, version):
    result = batch_results(version)["bad"]
    assert not result["ok"] and result["value"] == "deepepp"
    assert result["error"].startswith(
        f"qwen3-next/bad: SGLang {version} rejects --moe-a2a-backend 'deepepp' (did you mean 'deepep'?); "
        "valid choices: none, deepep, mooncake, "
    )


def test_entry_point_exit_status_and_message_for_the_renamed_flag():
    """The single-line CLI, as a launcher script would call it: exit 1 and the pinned text on stderr."""
    done = run_preflight("0.5.23", ["--model-path", MODEL, "--where", "qwen3-next/mamba-old-flag", "--", *OLD_MAMBA])
    assert done.returncode == 1, done.stderr[-4000:]
    assert done.stderr.strip().splitlines()[-1] == PINNED_0_5_23_MESSAGE


@pytest.mark.parametrize("version", PINNED)
def test_a_wrong_flag_fails_the_config_before_anything_is_launched(version, tmp_path):
    """Through the plugin: the preflight rejects the config, so no server starts and no GPU time is spent."""
    site = site_for(version)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "test_gsm8k.py").write_text((REPO / "suites" / "test_gsm8k.py").read_text())
    (tmp_path / "thresholds.yaml").write_text(
        "models:\n  qwen3-next:\n    path: Qwen/Qwen3-Next-80B-A3B-Instruct\n    configs:\n      tp1-typo:\n"
        "        args: [--tp-sise, '1']\n        gpus: 0\n        suites: [gsm8k]\n"
        "references:\n  gsm8k:\n    qwen3-next:\n      - {metric: accuracy, min: 0.9, provenance: test}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([site, str(REPO)])}
    python = os.environ.get("HARNESS_SGLANG_PYTHON") or sys.executable
    proc = subprocess.run(
        [python, "-m", "pytest", "suites", "-p", "no:cacheprovider", "--harness-gpus", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert f"SGLang {version} does not accept '--tp-sise' (did you mean '--tp-size'?)" in out, out[-3000:]
    logs = list((tmp_path / "reports").glob("*/logs/*"))
    assert logs == [], f"a server was launched: {logs}"
