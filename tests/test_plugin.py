"""The plugin end to end: pytester runs pytest inside pytest against real HF-engine subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from harness.serve.process_group import kill_group_now

REPO = Path(__file__).resolve().parents[1]

SUITE_FILES = {
    "test_gsm8k.py": (REPO / "suites" / "test_gsm8k.py").read_text(),
    "test_prefix_branching.py": (REPO / "suites" / "test_prefix_branching.py").read_text(),
}

# Records each test's server pid and which earlier servers are still alive, so the grouping is observable.
PID_PROBE = """
import json, os, psutil, pytest

@pytest.fixture(autouse=True)
def _record_server(request):
    yield
    harness = request.node.funcargs.get("harness")
    if harness is None:
        return
    path = os.path.join(str(request.config.rootpath), "pids.jsonl")
    seen = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    others = sorted({s["pid"] for s in seen} - {harness.live.server.pid})
    with open(path, "a") as f:
        f.write(json.dumps({"case": harness.case.key, "suite": harness.case.suite, "pid": harness.live.server.pid,
                            "alive_others": [p for p in others if psutil.pid_exists(p)]}) + "\\n")
"""


THRESHOLDS_TEMPLATE = textwrap.dedent(
    """
    models:
      tiny-qwen2:
        path: MODEL_DIR
        engine: hf
        dtype: float32
        options:
          gsm8k: {source: data, num_shots: 2, max_new_tokens: 8}
          prefix_branching: {prefix_lengths: [40], suffix_length: 8}
        configs:
          cpu:
            args: []
            suites: [gsm8k, prefix_branching]
          cpu-page16:
            args: [--page-size, "16"]
            suites: [gsm8k, prefix_branching]
    references:
      gsm8k:
        tiny-qwen2:
          - metric: accuracy
            GSM8K_REF
            provenance: random weights in a test
      prefix_branching:
        tiny-qwen2:
          - metric: branch_mismatches
            max: 0
            provenance: exact cache semantics
    """
)


def thresholds_yaml(model_dir: Path, gsm8k_ref: str = "min: 0.0") -> str:
    ref = gsm8k_ref.replace("\n", "\n        ")
    return THRESHOLDS_TEMPLATE.replace("MODEL_DIR", str(model_dir)).replace("GSM8K_REF", ref)


def write_thresholds(pytester: pytest.Pytester, text: str) -> None:
    """Not `makefile`: it strips the final newline, and a thresholds file without one reads as cut off."""
    (pytester.path / "thresholds.yaml").write_text(text if text.endswith("\n") else text + "\n")


def write_project(pytester: pytest.Pytester, model_dir: Path, **yaml_kwargs) -> None:
    pytester.makeconftest('pytest_plugins = ["harness.pytest_plugin.hooks"]\n' + PID_PROBE)
    write_thresholds(pytester, thresholds_yaml(model_dir, **yaml_kwargs))
    data = pytester.mkdir("data")
    rows = [
        {"question": f"Bob has {a} pens and gets {a + 1} more. How many?", "answer": f"{a}+{a + 1}\n#### {2 * a + 1}"}
        for a in range(1, 7)
    ]
    (data / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:4]) + "\n")
    (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows[4:]) + "\n")
    suites = pytester.mkdir("suites")
    for name, text in SUITE_FILES.items():
        (suites / name).write_text(text)


@pytest.fixture
def project(pytester: pytest.Pytester, tiny_model: Path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    write_project(pytester, tiny_model)
    return pytester


def latest_report(pytester: pytest.Pytester) -> Path:
    runs = sorted(p for p in (pytester.path / "reports").iterdir() if p.is_dir())
    assert runs, "no report directory written"
    return runs[-1]


def test_collect_only_lists_the_matrix_with_readable_ids(project):
    result = project.runpytest_subprocess("suites", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            # Grouped by server: both suites of one config, then the next config.
            "suites/test_gsm8k.py::test_gsm8k[[]tiny-qwen2/cpu[]]",
            "suites/test_prefix_branching.py::test_prefix_branching[[]tiny-qwen2/cpu[]]",
            "suites/test_gsm8k.py::test_gsm8k[[]tiny-qwen2/cpu-page16[]]",
            "suites/test_prefix_branching.py::test_prefix_branching[[]tiny-qwen2/cpu-page16[]]",
        ]
    )


def test_k_selects_with_underscores_for_dashes(project):
    result = project.runpytest_subprocess("suites", "--collect-only", "-q", "-k", "tiny_qwen2 and page16")
    result.stdout.fnmatch_lines(["*2/4 tests collected (2 deselected)*"])


def test_a_suite_no_config_runs_is_one_readable_skip(project):
    """A suite file with no case in the YAML (a trimmed thresholds.yaml) must not break collection."""
    (project.path / "suites" / "test_hf_parity.py").write_text((REPO / "suites" / "test_hf_parity.py").read_text())
    result = project.runpytest_subprocess("suites", "--collect-only", "-q", "-rs")
    result.stdout.fnmatch_lines(["suites/test_hf_parity.py::test_hf_parity[[]none[]]", "*5 tests collected*"])
    result = project.runpytest_subprocess("suites/test_hf_parity.py", "-rs")
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] *: no config in *thresholds.yaml runs suite 'hf_parity'"])
    assert result.ret == pytest.ExitCode.OK


def test_help_shows_options_with_defaults(project):
    result = project.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--harness-engine*", "*Default: 'yaml'*", "*--harness-limit*"])


def test_one_launch_serves_both_suites_and_is_gone_before_the_next_config(project):
    result = project.runpytest_subprocess("suites", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    seen = [json.loads(line) for line in (project.path / "pids.jsonl").read_text().splitlines()]
    # Items are regrouped by server even though the files interleave them.
    assert [s["case"] for s in seen] == ["tiny-qwen2/cpu"] * 2 + ["tiny-qwen2/cpu-page16"] * 2
    assert seen[0]["pid"] == seen[1]["pid"] != seen[2]["pid"] == seen[3]["pid"]
    assert seen[2]["alive_others"] == [], "the first server was still running when the second config ran"
    assert not psutil.pid_exists(seen[3]["pid"])
    report = latest_report(project)
    results = json.loads((report / "results.json").read_text())
    assert sorted(results["servers"]) == ["tiny-qwen2/cpu", "tiny-qwen2/cpu-page16"]
    assert [t["verdict"] for t in results["tests"]] == ["pass"] * 4
    assert len(list((report / "logs").iterdir())) == 2
    summary = (report / "summary.md").read_text()
    assert "| tiny-qwen2 | cpu-page16 | prefix_branching | branch_mismatches | 0 | ≤ 0 | pass |" in summary
    assert (report / "junit.xml").exists()
    samples = (report / "samples" / "gsm8k__tiny-qwen2__cpu.jsonl").read_text().splitlines()
    assert len(samples) == 4 and {"id", "prompt_sha256", "output", "correct"} <= set(json.loads(samples[0]))


def test_failing_verdict_prints_the_floor_message(project, tiny_model):
    from harness.verdict.statistics import compute_theta, compute_threshold

    ref = "value: 0.95\nn: 4\nsigma: 0.5"
    write_thresholds(project, thresholds_yaml(tiny_model, gsm8k_ref=ref))
    result = project.runpytest_subprocess("suites/test_gsm8k.py", "-k", "cpu and not page16", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    floor, theta = compute_threshold(0.95, 0.5, 4), compute_theta(0.5, 4)
    result.stdout.fnmatch_lines(
        [
            f"*gsm8k[[]tiny-qwen2/cpu[]]: accuracy 0.000 < floor {floor:.3f} (ref 0.950, n=4, σ=0.5, α=0.05, "
            f"θ={theta:.3f}) — thresholds.yaml references.gsm8k.tiny-qwen2[[]0[]]",
        ]
    )
    tests = json.loads((latest_report(project) / "results.json").read_text())["tests"]
    assert tests[0]["verdict"] == "fail" and tests[0]["checks"][0]["bound"] == pytest.approx(floor)


def test_no_reference_and_smoke_record_without_failing(project, tiny_model):
    write_thresholds(project, thresholds_yaml(tiny_model, gsm8k_ref="value: 0.95\nn: 4\nsigma: 0.5"))
    result = project.runpytest_subprocess("suites/test_gsm8k.py", "-k", "cpu and not page16", "--harness-smoke")
    result.assert_outcomes(passed=1)
    assert json.loads((latest_report(project) / "results.json").read_text())["tests"][0]["verdict"] == "recorded"


def test_a_failed_launch_fails_that_config_and_the_run_goes_on(project, tiny_model):
    broken = "broken:\n  args: [--no-such-flag]\n  suites: [gsm8k, prefix_branching]\n"
    text = thresholds_yaml(tiny_model).replace(
        "    configs:\n", "    configs:\n" + textwrap.indent(broken, "      "), 1
    )
    write_thresholds(project, text)
    result = project.runpytest_subprocess("suites", "-k", "broken or (cpu and not page16)", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=2, passed=2)  # a fixture that cannot start its server errors the test
    result.stdout.fnmatch_lines(
        [
            "*tiny-qwen2/broken: hf server exited with code 2 while starting*",
            "--- last 50 log lines ---",
            "*error: unrecognized arguments: --no-such-flag",
        ]
    )
    # The second test of the broken config fails at once with the same error, without a second launch.
    assert len(list((latest_report(project) / "logs").iterdir())) == 2


def test_malformed_yaml_is_a_usage_error_naming_the_key(project, tiny_model):
    text = thresholds_yaml(tiny_model).replace("suites: [gsm8k, prefix_branching]", "suites: [gsm8kk]", 1)
    write_thresholds(project, text)
    result = project.runpytest_subprocess("suites", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: thresholds.yaml: models.tiny-qwen2.configs.cpu.suites[[]0[]]: "
            "unknown suite 'gsm8kk' (did you mean 'gsm8k'?)*"
        ]
    )


def test_an_interrupted_run_leaves_a_valid_report_and_no_server(project):
    project.makepyfile(
        test_slow_suite=(
            "import time\nimport pytest\n\n"
            "@pytest.mark.harness(suite='gsm8k')\n"
            "def test_first(harness):\n    open('server.pid', 'w').write(str(harness.live.server.pid))\n"
            "    time.sleep(120)\n"
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "test_slow_suite.py", "-k", "cpu and not page16", "-p", "no:cacheprovider"],
        cwd=project.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server_pid = None
    try:
        deadline = time.monotonic() + 120
        while not (project.path / "server.pid").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-3000:]
            time.sleep(0.2)
        server_pid = int((project.path / "server.pid").read_text())
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        server_left = _alive(server_pid)  # judged before the cleanup below, which would hide it
    finally:
        # The server runs in its own session: killing pytest's group alone would leave it behind if this test fails.
        if proc.poll() is None:
            kill_group_now(proc.pid)
            proc.wait()
        if server_pid is not None and _alive(server_pid):
            kill_group_now(server_pid)
    assert not server_left
    results = json.loads((latest_report(project) / "results.json").read_text())
    assert "tiny-qwen2/cpu" in results["servers"]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_update_thresholds_writes_the_observed_value_into_the_existing_entry(project, tiny_model):
    write_thresholds(project, thresholds_yaml(tiny_model, gsm8k_ref="value: 0.95  # measured\nn: 4\nsigma: 0.5"))
    result = project.runpytest_subprocess(
        "suites/test_gsm8k.py", "-k", "cpu and not page16", "--harness-update-thresholds", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*gsm8k[[]tiny-qwen2/cpu[]]: wrote accuracy=0 (n=4, σ=0.3) into references.gsm8k.tiny-qwen2[[]0[]]"]
    )
    text = (project.path / "thresholds.yaml").read_text()
    assert "value: 0.0  # measured" in text and "n: 4" in text and "sigma: 0.3\n" in text  # 0 of 4: σ of ½ in 5
    assert "provenance: measured 20" in text and "by --harness-update-thresholds, run 20" in text


def test_step_summary_is_appended_and_secrets_stay_out_of_the_report(project, tiny_model, monkeypatch):
    token = "hf_" + "abcdefghijklmnopqrstuvwx"
    text = thresholds_yaml(tiny_model).replace(
        "            args: []\n", f"            args: []\n            env: {{HF_TOKEN: {token}}}\n", 1
    )
    write_thresholds(project, text)
    summary = project.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = project.runpytest_subprocess("suites/test_gsm8k.py", "-k", "cpu and not page16", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "| tiny-qwen2 | cpu | gsm8k | accuracy | 0 | ≥ 0 | pass |" in summary.read_text()
    report = latest_report(project)
    for path in report.rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path
    assert token not in result.stdout.str() + result.stderr.str()


def test_shards_split_by_server_and_cover_the_matrix_once(project):
    seen = []
    for shard in ("0/2", "1/2"):
        result = project.runpytest_subprocess("suites", "--collect-only", "-q", "--harness-shard", shard)
        seen.append([line for line in result.stdout.lines if "::" in line])
    assert all("tiny-qwen2/cpu]" in line for line in seen[0]) and len(seen[0]) == 2
    assert all("tiny-qwen2/cpu-page16]" in line for line in seen[1]) and len(seen[1]) == 2


def test_a_bad_shard_is_a_usage_error(project):
    result = project.runpytest_subprocess("suites", "--collect-only", "--harness-shard", "2/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --harness-shard: expected I/N with 0 <= I < N (e.g. 0/4), got '2/2'"])
