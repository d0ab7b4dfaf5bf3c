"""The fault table of docs/reliability.md, measured: each fault injected into a real run of the harness.

An inner pytest runs the real plugin on a small project (a tiny random Qwen2 served by the HF engine, GSM8K on
local data, the prefill cache-hit suite, prefix branching). Faults come from real processes: the engine itself
(killed, crashing, its port taken), a fault proxy in front of it (`tests/servers/fault_proxy.py`: 5xx, a
malformed body, a hang, NaN logprobs, no `cached_tokens`), signals to the inner pytest, a cut-off
thresholds.yaml. Every test pins the verdict line the harness printed (the same text as the table's column),
the report rows, the samples kept, and that no process the inner run started is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from harness.config.spec import ServerSpec
from harness.serve.engines import get_engine
from harness.serve.process_group import free_port, kill_group_now
from harness.serve.server import LifecycleOptions, Server

REPO = Path(__file__).resolve().parents[1]
PROXY = Path(__file__).parent / "servers" / "fault_proxy.py"
FAKE_ENGINE = Path(__file__).parent / "servers" / "fake_engine.py"
DOC = REPO / "docs" / "reliability.md"
QUESTIONS = 40

# fault -> the verdict line the harness prints for it in its report section (`*` stands for ports, times, counts).
VERDICTS = {
    "crash at launch": "gsm8k[tiny/cfg]: ERROR: server did not start: tiny/cfg: hf server exited with code 1 while starting (after * s): OSError: It looks like the config file at '*/config.json' is not a valid JSON file.",
    "crash mid-eval": "gsm8k[tiny/cfg]: ERROR: server exited with code -9 after * of 40 samples",
    "crash mid-eval, next suite": "prefix_branching[tiny/cfg]: ERROR: not run: the server exited with code -9 during gsm8k after * of 40 samples (log: *)",
    "attached server gone": "gsm8k[tiny/cfg]: ERROR: server stopped answering after * of 40 samples: POST http://127.0.0.1:*/generate failed after 4 attempt(s): no response: ClientConnectorError: *; GET /health: ConnectionRefusedError: *",
    "hung server": "gsm8k[tiny/cfg]: ERROR: server stopped answering after * of 40 samples: POST http://127.0.0.1:*/generate failed after 1 attempt(s): no response: no answer within 3 s (not retried); GET /health: TimeoutError: timed out",
    "5xx burst that passes": "gsm8k[tiny/cfg]: accuracy 0.000 ≥ min 0.000 — thresholds.yaml references.gsm8k.tiny[0]",
    "5xx that does not pass": "gsm8k[tiny/cfg]: ERROR: POST http://127.0.0.1:*/generate failed after 4 attempt(s): HTTP 500: Internal Server Error (injected)",
    "malformed JSON body": "gsm8k[tiny/cfg]: ERROR: POST http://127.0.0.1:*/generate answered HTTP 200 with a body that is not JSON (*): b'*",
    "NaN logprobs": "logprob_prefill_cache_hit[tiny/cfg]: FAILED: logprob_prefill_cache_hit: sample *: token 0: the server returned logprob None, not a finite number *",
    "no cached_tokens": "logprob_prefill_cache_hit[tiny/cfg]: ERROR: logprob_prefill_cache_hit: sample *: the server's meta_info has no 'cached_tokens' (it has *)",
    "port already taken": "gsm8k[tiny/cfg]: ERROR: server did not start: tiny/cfg: hf server exited with code 3 while starting (after * s): ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', *): address already in use",
    "SIGINT of pytest": "gsm8k[tiny/cfg]: ERROR: interrupted by Ctrl-C (KeyboardInterrupt)",
    "SIGTERM of pytest": "gsm8k[tiny/cfg]: ERROR: interrupted by SIGTERM (servers killed, report closed)",
    "thresholds.yaml cut off": "ERROR: thresholds.yaml:*: invalid YAML: * (the file ends mid-line, without a newline: was it cut off?)",
}

THRESHOLDS = """\
models:
  tiny:
    path: {model}
    engine: hf
    dtype: float32
    options:
      gsm8k: {{source: data, num_shots: 1, max_new_tokens: 24}}
      logprob_prefill_cache_hit: {{source: canary, num_samples: 4, max_prompt_tokens: 60, max_new_tokens: 6}}
      prefix_branching: {{prefix_lengths: [40], suffix_length: 8}}
    configs:
      cfg:
        args: []
        suites: [gsm8k, logprob_prefill_cache_hit, prefix_branching]
references:
  gsm8k:
    tiny: [{{metric: accuracy, min: 0.0, provenance: random weights in a test}}]
  logprob_prefill_cache_hit:
    tiny: [{{metric: kl_div, max: 1.0e-6, provenance: fp32 CPU engine}}]
  prefix_branching:
    tiny: [{{metric: branch_mismatches, max: 0, provenance: exact cache semantics}}]
"""

# The port-taken run: the harness's free port is one a decoy server already holds (as when another launch
# took it between our probe and the engine's bind).
DECOY_CONFTEST = """
import os
import harness.serve.server

harness.serve.server.free_port = lambda host="127.0.0.1": int(os.environ["DECOY_PORT"])
"""


@dataclass
class InnerRun:
    returncode: int
    output: str
    results: dict
    summary: str
    survivors: list[str]
    samples: dict[str, int]

    def rows(self) -> dict[str, dict]:
        return {row["suite"]: row for row in self.results["tests"]}

    def line(self, fault: str) -> str:
        """The output line matching the pinned verdict of `fault` (fails with the output if there is none)."""
        pattern = VERDICTS[fault]
        for line in self.output.splitlines():
            if matches(pattern, line.strip()):
                if os.environ.get("HARNESS_FAULT_LOG"):  # how docs/reliability.md's example lines were taken
                    with open(os.environ["HARNESS_FAULT_LOG"], "a") as log:
                        log.write(
                            json.dumps(
                                {
                                    "fault": fault,
                                    "line": line.strip(),
                                    "rows": self.rows(),
                                    "samples": self.samples,
                                    "survivors": self.survivors,
                                }
                            )
                            + "\n"
                        )
                return line.strip()
        raise AssertionError(f"no line matches {pattern!r}:\n{self.output[-6000:]}")


def matches(pattern: str, text: str) -> bool:
    """`*` matches anything; every other character only itself (brackets included, unlike fnmatch)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), text, re.DOTALL) is not None


def write_project(root: Path, model_dir: Path, conftest: str = "") -> None:
    root.mkdir(exist_ok=True)
    (root / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n' + conftest)
    (root / "thresholds.yaml").write_text(THRESHOLDS.format(model=model_dir))
    (root / "data").mkdir()
    rows = [
        {
            "question": f"Ann has {a} pens and buys {a + 2} more. How many pens?",
            "answer": f"{a}+{a + 2}\n#### {2 * a + 2}",
        }
        for a in range(QUESTIONS + 1)
    ]
    (root / "data" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:QUESTIONS]))
    (root / "data" / "train.jsonl").write_text(json.dumps(rows[QUESTIONS]) + "\n")
    (root / "suites").mkdir()
    for suite in ("gsm8k", "logprob_prefill_cache_hit", "prefix_branching"):
        (root / "suites" / f"test_{suite}.py").write_text((REPO / "suites" / f"test_{suite}.py").read_text())


def run_inner(root: Path, *args: str, act=None, env: dict | None = None, timeout: float = 240) -> InnerRun:
    """Run pytest on the project; `act(proc, root)` is called every 0.1 s while it runs and may inject a fault.
    Every process that descends from the inner pytest is recorded, and any still alive afterwards is a survivor
    (then killed, so a failing test leaves nothing behind either)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "suites",
        "-p",
        "no:cacheprovider",
        "-rA",
        "--harness-concurrency",
        "4",
        *args,
    ]
    log = root / "inner.log"
    seen: dict[int, psutil.Process] = {}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                seen.update({p.pid: p for p in psutil.Process(proc.pid).children(recursive=True)})
            if act is not None and act(proc, root):
                act = None
            assert time.monotonic() < deadline, (
                f"inner pytest still running after {timeout} s:\n{log.read_text()[-4000:]}"
            )
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            kill_group_now(proc.pid)
            proc.wait()
    time.sleep(0.5)  # SIGKILL is asynchronous: let the kernel finish what the inner run's teardown sent
    survivors = [f"pid {p.pid} {' '.join(p.cmdline())[:120]}" for p in seen.values() if _alive(p)]
    for p in seen.values():
        with contextlib.suppress(psutil.Error):
            p.kill()
    reports = sorted(p for p in (root / "reports").iterdir() if p.is_dir()) if (root / "reports").exists() else []
    run_dir = reports[-1] if reports else None
    results = json.loads((run_dir / "results.json").read_text())
    samples = {f.name: len(f.read_text().splitlines()) for f in (run_dir / "samples").iterdir()} if run_dir else {}
    summary = (run_dir / "summary.md").read_text() if run_dir else ""
    return InnerRun(proc.returncode, log.read_text(), results, summary, survivors, samples)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def engine_pid(proc: subprocess.Popen) -> int | None:
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(proc.pid).children(recursive=True):
            if "-m hf_engine" in " ".join(child.cmdline()):
                return child.pid
    return None


def samples_written(root: Path, suite: str = "gsm8k") -> int:
    files = list((root / "reports").glob(f"*/samples/{suite}__*.jsonl")) if (root / "reports").exists() else []
    return sum(len(f.read_bytes().splitlines()) for f in files)


def once_samples(n: int, then):
    """An `act` that calls `then(proc)` once GSM8K has written `n` samples."""

    def act(proc, root) -> bool:
        if samples_written(root) >= n:
            then(proc)
            return True
        return False

    return act


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


@contextlib.contextmanager
def serve_script(script: Path, *args: str):
    """`python script --port P *args` in its own process group, yielded as its URL once /health answers 200;
    killed and reaped after, and registered with harness.serve.process_group meanwhile, so a pytest stopped by SIGTERM or
    SIGHUP kills it too."""
    from harness.serve import process_group

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    process_group.register(proc.pid)
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"http://127.0.0.1:{port}/health"):
            assert proc.poll() is None and time.monotonic() < deadline, f"{script.name} did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        kill_group_now(proc.pid)
        proc.wait()
        process_group.unregister(proc.pid)


def fault_proxy(upstream: str, fault: str, *extra: str):
    return serve_script(PROXY, "--upstream", upstream, "--fault", fault, *extra)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def assert_clean(run: InnerRun) -> None:
    assert run.survivors == [], run.survivors


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
        while not _answers(f"http://127.0.0.1:{port}/health_generate"):
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
    run.line("thresholds.yaml cut off")
    assert run.returncode == 4 and run.results["tests"] == []
    assert matches(VERDICTS["thresholds.yaml cut off"].removeprefix("ERROR: "), run.results["run"]["error"])
    assert "**The run did not start:** thresholds.yaml:" in run.summary


# -- the table --------------------------------------------------------------------------------------------------
def test_the_fault_table_in_the_docs_shows_the_pinned_verdicts():
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) >= 3 and cells[0] in VERDICTS:
            rows[cells[0]] = cells[2].strip("`").replace("\\|", "|")
    assert rows == VERDICTS
