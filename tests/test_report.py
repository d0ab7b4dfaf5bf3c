"""The report writer: valid files after every step, secrets masked."""

import json

import pytest

from harness.report.results import Report
from harness.serve.secrets import scrub_command


def test_secret_flags_and_token_like_values_are_masked():
    command = [
        "python",
        "-m",
        "sglang.launch_server",
        "--api-key",
        "abc123",
        "--hf-token=xyz",
        "--model-path",
        "hf_abcdefghijkl",
        "--tp-size",
        "2",
    ]
    assert scrub_command(command) == [
        "python",
        "-m",
        "sglang.launch_server",
        "--api-key",
        "***",
        "--hf-token=***",
        "--model-path",
        "***",
        "--tp-size",
        "2",
    ]


def test_every_record_leaves_valid_json_and_a_summary_row(tmp_path):
    report = Report(tmp_path / "run", tmp_path)
    sink = report.sample_sink("gsm8k", "canary__cpu")
    sink({"id": "q1", "correct": True})
    report.record_server("canary/cpu", {"engine": "hf", "command": ["python", "--api-key", "s3cret"]})
    report.record_test(
        {
            "suite": "gsm8k",
            "case": "canary/cpu",
            "verdict": "pass",
            "checks": [
                {"metric": "accuracy", "observed": 0.995, "bound": 0.9632, "kind": "floor", "passed": True},
                {"metric": "invalid_rate", "observed": 0.0, "bound": None, "passed": None},
            ],
        }
    )
    report.record_test(
        {
            "suite": "gsm8k",
            "case": "canary/tp2",
            "verdict": "skipped",
            "skipped": "canary/tp2 needs 2 GPU(s), 0 available",
        }
    )
    # Nothing closed yet (as after a kill): the files are already complete.
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["servers"]["canary/cpu"]["command"] == ["python", "--api-key", "***"]
    assert results["tests"][0]["verdict"] == "pass"
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "| canary | cpu | gsm8k | accuracy | 0.995 | ≥ 0.9632 | pass |" in summary
    assert "| canary | cpu | gsm8k | invalid_rate | 0 | – | recorded |" in summary
    assert "| canary | tp2 | gsm8k | – | – | – | skipped: canary/tp2 needs 2 GPU(s), 0 available |" in summary
    assert json.loads((tmp_path / "run" / "samples" / "gsm8k__canary__cpu.jsonl").read_text()) == {
        "id": "q1",
        "correct": True,
    }
    report.close()
    assert "finished" in json.loads((tmp_path / "run" / "results.json").read_text())["run"]


def test_git_state_is_the_projects_own_with_a_dirty_flag_or_unknown(tmp_path):
    """A working tree copied to a GPU machine carried the session's first .git: the report must not claim it; a
    tree copied into another repository must not report that repository's sha."""
    import shutil
    import subprocess

    from harness.report.run_info import git_state

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert git_state(tmp_path) == {"git_sha": "unknown", "git_dirty": None}  # no repository at all
    git("init", "-q")
    assert git_state(tmp_path) == {"git_sha": "unknown", "git_dirty": None}  # a repository without a commit
    (tmp_path / "thresholds.yaml").write_text("models: {}\n")
    git("add", "thresholds.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert git_state(tmp_path) == {"git_sha": head, "git_dirty": False}
    (tmp_path / "untracked.txt").write_text("not part of the run's code\n")
    assert git_state(tmp_path) == {"git_sha": head, "git_dirty": False}
    (tmp_path / "thresholds.yaml").write_text("models: {x: 1}\n")
    assert git_state(tmp_path) == {"git_sha": head, "git_dirty": True}
    copy = tmp_path / "copies" / "project"
    shutil.copytree(tmp_path, copy, ignore=shutil.ignore_patterns(".git", "copies"))
    assert git_state(copy) == {"git_sha": "unknown", "git_dirty": None}  # inside tmp_path's repository, not its own


def test_a_password_in_the_base_url_never_reaches_an_error_message(tmp_path):
    """Attaching to a URL with a password: the error names the URL with the password masked."""
    from harness.config.spec import ServerSpec
    from harness.serve.engines.attach import AttachEngine
    from harness.serve.process_group import free_port
    from harness.serve.server import LifecycleOptions, Server, ServerStartError

    url = f"http://user:hunter2@127.0.0.1:{free_port()}"
    spec = ServerSpec("remote", "x", "", engine="attach", startup_timeout=5.0)
    options = LifecycleOptions(poll_interval=0.05)
    with pytest.raises(ServerStartError) as caught:
        Server(spec, AttachEngine(), log_dir=tmp_path, base_url=url, options=options).start()
    assert "hunter2" not in str(caught.value)
    assert "user:***@127.0.0.1" in str(caught.value)
