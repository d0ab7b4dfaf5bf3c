"""Errors a user meets before anything runs are said at once, once, with the option or YAML key at fault: nothing
listening at --harness-base-url, a missing local model directory, a malformed base URL or shard, a config path
relative to where pytest was started; runs that never start leave no report directory; the harness's command-line
entry points answer --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from inner_run_support import assert_clean, run_inner, write_project

from harness.config.spec import ServerSpec
from harness.serve.process_group import free_port
from harness.serve.server import LifecycleOptions, NothingAnswers, Server

REPO = Path(__file__).resolve().parents[1]


def nothing_answers(url: str) -> str:
    return (
        f"nothing answers at {url} (ConnectionRefusedError: [Errno 111] Connection refused): is the server running "
        "there? Check --harness-base-url (or HARNESS_BASE_URL)"
    )


# -- attach to a port nothing listens on ---------------------------------------------------------------------------
def test_attaching_where_nothing_listens_is_not_waited_out_as_a_slow_start():
    url = f"http://127.0.0.1:{free_port()}"
    server = Server.attach(url, spec=ServerSpec("tiny", "cfg", "", engine="attach"), options=LifecycleOptions())
    with pytest.raises(NothingAnswers) as raised:  # not ServerStartTimeout: the 60 s attach timeout is not waited
        server.start()
    assert str(raised.value) == f"tiny/cfg: {nothing_answers(url)}"


def test_a_run_attached_where_nothing_listens_fails_each_test_with_one_line(tmp_path, tiny_model):
    write_project(tmp_path, tiny_model)
    url = f"http://127.0.0.1:{free_port()}"
    run = run_inner(tmp_path, "-k", "gsm8k or branching", "--harness-base-url", url)
    lines = {line.strip() for line in run.output.splitlines()}
    for suite in ("gsm8k", "prefix_branching"):
        assert f"{suite}[tiny/cfg]: ERROR: {nothing_answers(url)}" in lines
    assert {row["suite"]: row["verdict"] for row in run.results["tests"]} == {
        "gsm8k": "error",
        "prefix_branching": "error",
    }
    assert run.returncode == 1
    assert_clean(run)


# -- a missing model directory, found before anything starts -------------------------------------------------------
TWO_MODELS = """\
models:
  tiny:
    path: {model}
    engine: hf
    options:
      gsm8k: {{source: data, num_shots: 1, max_new_tokens: 8}}
    configs:
      cfg: {{args: [], suites: [gsm8k]}}
  broken:
    path: assets/broken/modle
    engine: hf
    options:
      gsm8k: {{source: data, num_shots: 1, max_new_tokens: 8}}
    configs:
      cfg: {{args: [], suites: [gsm8k]}}
references:
  gsm8k:
    tiny: [{{metric: accuracy, min: 0.0, provenance: test}}]
    broken: [{{metric: accuracy, min: 0.0, provenance: test}}]
"""


def test_a_missing_model_directory_is_named_by_its_key_once_before_anything_starts(tmp_path, tiny_model):
    write_project(tmp_path, tiny_model)
    (tmp_path / "thresholds.yaml").write_text(TWO_MODELS.format(model=tiny_model))
    (tmp_path / "assets" / "broken" / "model").mkdir(parents=True)  # the near miss
    run = run_inner(tmp_path, "-k", "broken")
    message = (
        f"ERROR: thresholds.yaml: models.broken.path: no directory 'assets/broken/modle' (looked for "
        f"{tmp_path.resolve()}/assets/broken/modle) (did you mean 'assets/broken/model'?); give an existing local "
        "model directory or a hub id like 'org/name'"
    )
    assert run.output.count(message) == 1 and "Traceback" not in run.output, run.output
    assert run.returncode == 4 and not (tmp_path / "reports").exists()
    # A config not selected does not stop the others; --collect-only lists them and writes no report either.
    run = run_inner(tmp_path, "-k", "tiny", "--collect-only", "-q")
    assert "suites/test_gsm8k.py::test_gsm8k[tiny/cfg]" in run.output.splitlines()
    assert run.returncode == 0 and not (tmp_path / "reports").exists()
    assert_clean(run)


# -- usage errors at startup ---------------------------------------------------------------------------------------
@pytest.fixture
def small(pytester: pytest.Pytester, tiny_model, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("HARNESS_BASE_URL", raising=False)
    write_project(pytester.path, tiny_model)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")  # the rootdir, wherever pytest is started
    return pytester


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--harness-base-url", "localhost:30000"],
            "ERROR: --harness-base-url (or HARNESS_BASE_URL): expected http://host:port or https://host:port, got "
            "'localhost:30000' (did you mean 'http://localhost:30000'?)",
        ),
        (["--harness-shard", "3/2"], "ERROR: --harness-shard: expected I/N with 0 <= I < N (e.g. 0/4), got '3/2'"),
        (
            ["--harness-engine", "attach"],
            "ERROR: --harness-engine attach needs --harness-base-url (or HARNESS_BASE_URL)",
        ),
    ],
)
def test_malformed_options_are_usage_errors_at_startup(small, option, message):
    result = small.runpytest_subprocess("suites", *option, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.strip()] == [message]
    assert not (small.path / "reports").exists()


def test_harness_config_is_relative_to_the_working_directory(small, monkeypatch):
    configs = small.path / "configs"
    configs.mkdir()
    text = (small.path / "thresholds.yaml").read_text()
    (configs / "mine.yaml").write_text(text.replace("tiny:", "mine:"))
    monkeypatch.chdir(configs)
    result = small.runpytest_subprocess("../suites", "--harness-config", "mine.yaml", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "suites/test_gsm8k.py::test_gsm8k[mine/cfg]" in result.outlines  # ids are relative to the rootdir
    assert not (small.path / "reports").exists() and not (configs / "reports").exists()  # --collect-only: none


# -- from the repo root, as users type it ---------------------------------------------------------------------------
def run_here(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_k_from_the_repo_root_reaches_the_suites():
    done = run_here("-m", "pytest", "-k", "qwen3_next", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    assert "suites/test_gsm8k.py::test_gsm8k[qwen3-next-80b/tp4]" in ids
    assert ids and all(line.startswith("suites/") for line in ids)  # not the harness's own tests/


def test_the_command_line_entry_points_answer_help():
    verbs = run_here("-m", "harness", "--help")
    assert verbs.returncode == 0 and verbs.stdout.startswith("usage: python -m harness [-h] VERB ...")
    listed = {line.split()[0] for line in verbs.stdout.splitlines() if line.startswith("    ")}
    assert {"compare", "history", "report", "schema"} <= listed
    bench = run_here("-m", "harness.evals.perf.bench_serving", "--help")
    assert bench.returncode == 0 and bench.stderr == ""
    assert bench.stdout.startswith("usage: python -m harness.evals.perf.bench_serving [-h] samples [samples ...]")
    missing = run_here("-m", "harness.evals.perf.bench_serving", "nope.jsonl")
    assert missing.returncode == 2 and missing.stderr.splitlines()[-1] == (
        "python -m harness.evals.perf.bench_serving: error: nope.jsonl: no such file "
        "(a run's samples/serving_perf__<model>__<config>.jsonl)"
    )


def test_every_local_directory_a_selected_config_names_is_checked_and_hub_ids_are_not(tmp_path):
    from harness.config.model_paths import missing_model_paths
    from harness.config.thresholds import load_thresholds

    (tmp_path / "drafts" / "eagle3").mkdir(parents=True)
    (tmp_path / "thresholds.yaml").write_text(
        "models:\n"
        "  m:\n"
        "    path: org/Model\n"  # a hub id: not checked here
        "    tokenizer: ./tok\n"
        "    configs:\n"
        "      spec: {args: [--speculative-draft-model-path, drafts/eagle33/x], suites: [gsm8k]}\n"
        "      plain: {args: [], suites: [gsm8k]}\n"
        "references: {}\n"
    )
    thresholds = load_thresholds(tmp_path / "thresholds.yaml")
    root = tmp_path.resolve()
    hint = "; give an existing local model directory or a hub id like 'org/name'"
    assert missing_model_paths(thresholds, [("m", "spec"), ("m", "plain")]) == [
        f"{thresholds.source}: models.m.tokenizer: no directory './tok' (looked for {root}/tok){hint}",
        f"{thresholds.source}: models.m.configs.spec.args[1]: no directory 'drafts/eagle33/x' (looked for "
        f"{root}/drafts/eagle33/x){hint}",  # eagle3 is close but eagle3/x is not there either: no suggestion
    ]
    assert missing_model_paths(thresholds, [("m", "plain")]) == [
        f"{thresholds.source}: models.m.tokenizer: no directory './tok' (looked for {root}/tok){hint}"
    ]
