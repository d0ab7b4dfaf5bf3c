"""Real pytest runs of the harness on a small project, and the servers they talk to (shared by the fault tests
and every test that runs the plugin end to end).

`write_project` writes a project (a tiny random Qwen2 served by the HF engine, GSM8K on local data, the prefill
cache-hit suite, prefix branching); `run_inner` runs pytest on it in its own process group and records every
process it started, so `assert_clean` can say none is left behind. `serve_script` starts a helper server
(tests/servers/) in its own process group; `fault_proxy` puts tests/servers/fault_proxy.py in front of an engine.
VERDICTS is the fault table of docs/reliability.md: `InnerRun.line(fault)` finds the line the harness printed for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.serve.process_group import free_port, kill_group_now

REPO = Path(__file__).resolve().parents[1]
PROXY = Path(__file__).parent / "servers" / "fault_proxy.py"
QUESTIONS = 40

# fault -> the verdict line the harness prints for it in its report section (`*` stands for ports, times, counts).
VERDICTS = {
    "crash at launch": (
        "gsm8k[tiny/cfg]: ERROR: server did not start: tiny/cfg: hf server exited with code 1 while starting (after "
        "* s): OSError: It looks like the config file at '*/config.json' is not a valid JSON file."
    ),
    "crash mid-eval": "gsm8k[tiny/cfg]: ERROR: server exited with code -9 after * of 40 samples",
    "crash mid-eval, next suite": (
        "prefix_branching[tiny/cfg]: ERROR: not run: the server exited with code -9 during gsm8k after * of 40 "
        "samples (log: *)"
    ),
    "attached server gone": (
        "gsm8k[tiny/cfg]: ERROR: server stopped answering after * of 40 samples: POST http://127.0.0.1:*/generate "
        "failed after 4 attempt(s): no response: ClientConnectorError: *; GET /health: ConnectionRefusedError: *"
    ),
    "hung server": (
        "gsm8k[tiny/cfg]: ERROR: server stopped answering after * of 40 samples: POST http://127.0.0.1:*/generate "
        "failed after 1 attempt(s): no response: no answer within 3 s (not retried); GET /health: TimeoutError: "
        "timed out"
    ),
    "5xx burst that passes": "gsm8k[tiny/cfg]: accuracy 0.000 ≥ min 0.000 — thresholds.yaml references.gsm8k.tiny[0]",
    "5xx that does not pass": (
        "gsm8k[tiny/cfg]: ERROR: POST http://127.0.0.1:*/generate failed after 4 attempt(s): HTTP 500: Internal "
        "Server Error (injected)"
    ),
    "malformed JSON body": (
        "gsm8k[tiny/cfg]: ERROR: POST http://127.0.0.1:*/generate answered HTTP 200 with a body that is not JSON "
        "(*): b'*"
    ),
    "NaN logprobs": (
        "logprob_prefill_cache_hit[tiny/cfg]: FAILED: logprob_prefill_cache_hit: sample *: token 0: the server "
        "returned logprob None, not a finite number *"
    ),
    "no cached_tokens": (
        "logprob_prefill_cache_hit[tiny/cfg]: ERROR: logprob_prefill_cache_hit: sample *: the server's meta_info has "
        "no 'cached_tokens' (it has *)"
    ),
    "port already taken": (
        "gsm8k[tiny/cfg]: ERROR: server did not start: tiny/cfg: hf server exited with code 3 while starting (after "
        "* s): ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', *): address already in "
        "use"
    ),
    "SIGINT of pytest": "gsm8k[tiny/cfg]: ERROR: interrupted by Ctrl-C (KeyboardInterrupt)",
    "SIGTERM of pytest": "gsm8k[tiny/cfg]: ERROR: interrupted by SIGTERM (servers killed, report closed)",
    "thresholds.yaml cut off": (
        "ERROR: thresholds.yaml:*: invalid YAML: * (the file ends mid-line, without a newline: was it cut off?)"
    ),
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
    results = json.loads((run_dir / "results.json").read_text()) if run_dir else {}  # none: the run never started
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


@contextlib.contextmanager
def serve_script(script: Path, *args: str):
    """`python script --port P *args` in its own process group, yielded as its URL once /health answers 200;
    killed and reaped after, and registered with harness.serve.process_group meanwhile, so a pytest stopped by
    SIGTERM or SIGHUP kills it too."""
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
        while not answers(f"http://127.0.0.1:{port}/health"):
            assert proc.poll() is None and time.monotonic() < deadline, f"{script.name} did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        kill_group_now(proc.pid)
        proc.wait()
        process_group.unregister(proc.pid)


def fault_proxy(upstream: str, fault: str, *extra: str):
    return serve_script(PROXY, "--upstream", upstream, "--fault", fault, *extra)


def answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def assert_clean(run: InnerRun) -> None:
    assert run.survivors == [], run.survivors
