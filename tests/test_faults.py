"""The fault table of docs/reliability.md, measured: each fault injected into a real run of the harness.

An inner pytest runs the real plugin on a small project (a tiny random Qwen2 served by the HF engine, GSM8K on
local data, the prefill cache-hit suite, prefix branching). Faults come from real processes: the engine itself
(killed, crashing, its port taken), a fault proxy in front of it (`tests/servers/fault_proxy.py`: 5xx, a
malformed body, a hang, NaN logprobs, no `cached_tokens`), signals to the inner pytest, a cut-off
thresholds.yaml. Every test pins the verdict line the harness printed (the same text as the table's column),
the report rows, the samples kept, and that no process the inner run started is left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from inner_run_support import (
    QUESTIONS,
    VERDICTS,
    answers,
    assert_clean,
    engine_pid,
    fault_proxy,
    matches,
    once_samples,
    run_inner,
    write_project,
)

from harness.config.spec import ServerSpec
from harness.serve.engines import get_engine
from harness.serve.process_group import free_port, kill_group_now
from harness.serve.server import LifecycleOptions, Server

REPO = Path(__file__).resolve().parents[1]
FAKE_ENGINE = Path(__file__).parent / "servers" / "fake_engine.py"
DOC = REPO / "docs" / "reliability.md"

# The port-taken run: the harness's free port is one a decoy server already holds (as when another launch
# took it between our probe and the engine's bind).
DECOY_CONFTEST = """
import os
import harness.serve.server

harness.serve.server.free_port = lambda host="127.0.0.1": int(os.environ["DECOY_PORT"])
"""


@pytest.fixture
def project(tmp_path, tiny_model) -> Path:
    write_project(tmp_path, tiny_model)
    return tmp_path


@pytest.fixture(scope="module")
def engine(tiny_model, tmp_path_factory):
    """An HF engine on the tiny model, through the harness's own lifecycle; the proxied runs attach to it."""
    spec = ServerSpec(model="tiny", config="upstream", model_path=str(tiny_model), engine="hf")
    with Server(
        spec,
        get_engine(spec.engine),
        log_dir=tmp_path_factory.mktemp("upstream"),
        options=LifecycleOptions(grace_period=10),
    ) as server:
        yield server


# -- the engine itself ------------------------------------------------------------------------------------------
def test_crash_at_launch(tmp_path, tiny_model):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen2", "hidden_size": ')  # a checkpoint cut off
    write_project(tmp_path / "p", broken)
    run = run_inner(tmp_path / "p", "-k", "gsm8k or branching")
    run.line("crash at launch")
    assert {s: r["verdict"] for s, r in run.rows().items()} == {"gsm8k": "error", "prefix_branching": "error"}
    assert "exited with code 1 while starting" in run.rows()["prefix_branching"]["error"]
    assert "| tiny | cfg | gsm8k | – | – | – | error: gsm8k[tiny/cfg]: server did not start:" in run.summary
    assert run.returncode == 1
    assert_clean(run)


def test_crash_mid_eval_fails_at_once_and_keeps_the_samples(project):
    run = run_inner(
        project, "-k", "gsm8k or branching", act=once_samples(6, lambda p: os.kill(engine_pid(p), signal.SIGKILL))
    )
    line = run.line("crash mid-eval")
    run.line("crash mid-eval, next suite")
    done = int(re.search(r"after (\d+) of", line).group(1))
    rows = run.rows()
    assert rows["gsm8k"]["verdict"] == "error" and rows["gsm8k"]["exit_code"] == -9
    assert rows["gsm8k"]["samples_kept"] == done == run.samples["gsm8k__tiny__cfg.jsonl"] >= 6
    assert rows["prefix_branching"]["verdict"] == "error"
    assert "| tiny | cfg | gsm8k | – | – | – | error: gsm8k[tiny/cfg]: server exited with code -9 after" in run.summary
    assert_clean(run)


def test_port_already_taken_is_not_mistaken_for_our_server(tmp_path, tiny_model):
    port = free_port()
    decoy = subprocess.Popen(
        [sys.executable, str(FAKE_ENGINE), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60  # a decoy that dies or never answers fails here, not hangs the job
        while not answers(f"http://127.0.0.1:{port}/health_generate"):
            assert decoy.poll() is None, f"the decoy engine exited with code {decoy.returncode} before answering"
            assert time.monotonic() < deadline, f"the decoy engine did not answer on port {port} within 60 s"
            time.sleep(0.1)
        write_project(tmp_path, tiny_model, conftest=DECOY_CONFTEST)
        run = run_inner(tmp_path, "-k", "gsm8k", env={"DECOY_PORT": str(port)})
    finally:
        kill_group_now(decoy.pid)
        decoy.wait()
    run.line("port already taken")
    assert "address already in use" in run.output  # the engine's own log line, in the verdict's log tail
    assert run.rows()["gsm8k"]["verdict"] == "error"
    assert run.samples.get("gsm8k__tiny__cfg.jsonl", 0) == 0  # nothing was asked of the decoy
    assert_clean(run)


# -- an attached server, through a fault proxy ---------------------------------------------------------------
def test_attached_server_gone(project, tiny_model, tmp_path):
    spec = ServerSpec(model="tiny", config="victim", model_path=str(tiny_model), engine="hf")
    with Server(
        spec, get_engine(spec.engine), log_dir=tmp_path / "victim", options=LifecycleOptions(grace_period=5)
    ) as victim:
        run = run_inner(
            project,
            "-k",
            "gsm8k or branching",
            "--harness-base-url",
            victim.base_url,
            act=once_samples(6, lambda p: os.killpg(victim.pid, signal.SIGKILL)),
        )
    run.line("attached server gone")
    assert "--- last" not in run.output  # attached: no log to show
    assert "not run: the server stopped answering during gsm8k" in run.rows()["prefix_branching"]["error"]
    assert run.rows()["gsm8k"]["samples_kept"] >= 6
    assert_clean(run)


def test_hung_server_is_reported_after_the_request_timeout(project, engine):
    with fault_proxy(engine.base_url, "hang", "--after", "8") as url:
        run = run_inner(
            project, "-k", "gsm8k or branching", "--harness-base-url", url, "--harness-request-timeout", "3"
        )
    run.line("hung server")
    assert run.rows()["gsm8k"]["verdict"] == run.rows()["prefix_branching"]["verdict"] == "error"
    assert_clean(run)


def test_a_5xx_burst_is_retried_and_counted_apart_from_answers(project, engine):
    with fault_proxy(engine.base_url, "5xx-burst", "--after", "2", "--count", "3") as url:
        run = run_inner(project, "-k", "gsm8k", "--harness-base-url", url)
    run.line("5xx burst that passes")
    row = run.rows()["gsm8k"]
    assert row["verdict"] == "pass" and row["n"] == QUESTIONS
    assert row["details"]["client"] == {"requests": QUESTIONS + 3, "retries": 3, "failures": 0}
    assert run.returncode == 0
    assert_clean(run)


def test_5xx_that_does_not_pass_is_an_error_not_a_wrong_answer(project, engine):
    with fault_proxy(engine.base_url, "5xx-always", "--after", "5") as url:
        run = run_inner(project, "-k", "gsm8k or branching", "--harness-base-url", url)
    run.line("5xx that does not pass")
    rows = run.rows()
    assert rows["gsm8k"]["verdict"] == "error" and rows["gsm8k"]["samples_kept"] == 5
    assert rows["gsm8k"]["client"]["failures"] >= 1 and rows["gsm8k"]["client"]["retries"] >= 3
    assert rows["prefix_branching"]["verdict"] == "error"  # the server still answers /health: no "not run"
    assert "failed after 4 attempt(s): HTTP 500" in rows["prefix_branching"]["error"]
    assert_clean(run)


def test_malformed_json_body(project, engine):
    with fault_proxy(engine.base_url, "malformed", "--after", "3") as url:
        run = run_inner(project, "-k", "gsm8k", "--harness-base-url", url, "--harness-concurrency", "1")
    run.line("malformed JSON body")
    assert run.rows()["gsm8k"]["verdict"] == "error" and run.rows()["gsm8k"]["samples_kept"] == 3
    assert "Traceback" not in run.output and "JSONDecodeError:" not in run.output
    assert_clean(run)


def test_nan_logprobs_fail_the_cache_suite(project, engine):
    with fault_proxy(engine.base_url, "nan-logprobs") as url:
        run = run_inner(project, "-k", "cache_hit", "--harness-base-url", url)
    run.line("NaN logprobs")
    assert run.rows()["logprob_prefill_cache_hit"]["verdict"] == "fail"
    assert (
        "| tiny | cfg | logprob_prefill_cache_hit | - | – | – | FAIL: logprob_prefill_cache_hit: sample" in run.summary
    )
    assert_clean(run)


def test_meta_info_without_cached_tokens(project, engine):
    with fault_proxy(engine.base_url, "no-cached-tokens") as url:
        run = run_inner(project, "-k", "cache_hit or branching", "--harness-base-url", url)
    run.line("no cached_tokens")
    rows = run.rows()
    assert rows["logprob_prefill_cache_hit"]["verdict"] == rows["prefix_branching"]["verdict"] == "error"
    assert_clean(run)


# -- the harness itself ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("signum", "fault"), [(signal.SIGINT, "SIGINT of pytest"), (signal.SIGTERM, "SIGTERM of pytest")]
)
def test_signal_to_pytest_leaves_a_row_for_every_test_and_no_server(project, signum, fault):
    run = run_inner(project, "-k", "gsm8k or branching", act=once_samples(4, lambda p: os.kill(p.pid, signum)))
    rows = run.rows()
    interrupted = rows["gsm8k"]["error"]
    assert matches(VERDICTS[fault].replace(": ERROR: ", ": "), interrupted), interrupted
    if signum == signal.SIGINT:
        run.line(fault)  # pytest's own summary printed it; SIGTERM leaves only the report
    assert set(rows) == {"gsm8k", "prefix_branching"}  # every selected test, none that -k deselected
    assert rows["prefix_branching"]["error"].startswith(
        "prefix_branching[tiny/cfg]: not run: the session was interrupted by"
    )
    assert "finished" in run.results["run"]
    assert run.samples["gsm8k__tiny__cfg.jsonl"] >= 4
    assert run.returncode == (2 if signum == signal.SIGINT else -signal.SIGTERM)
    assert_clean(run)


def test_thresholds_cut_off_mid_file(project):
    text = (project / "thresholds.yaml").read_text()
    (project / "thresholds.yaml").write_text(text[: text.index("suites: [gsm8k,") + 20])
    run = run_inner(project)
    line = run.line("thresholds.yaml cut off")
    assert run.output.count(line) == 1 and "Traceback" not in run.output  # said once, without a traceback
    assert run.returncode == 4 and not (project / "reports").exists()  # a run that never started leaves no report


# -- the table --------------------------------------------------------------------------------------------------
def test_the_fault_table_in_the_docs_shows_the_pinned_verdicts():
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) >= 3 and cells[0] in VERDICTS:
            rows[cells[0]] = cells[2].strip("`").replace("\\|", "|")
    assert rows == VERDICTS
