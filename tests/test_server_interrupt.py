"""An interrupted harness never leaves a server behind: pytest in a subprocess, stopped by a signal.

The inner pytest launches the fake engine (with a worker child and an orphaned grandchild) through `Server`
and sleeps; the outer test waits for the engine's pid file, signals the inner pytest only (as a terminal's
Ctrl-C would: the server is in its own session), and checks every process of the engine is gone.
"""

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

REPO = Path(__file__).resolve().parents[1]
FAKE_ENGINE = str(Path(__file__).parent / "servers" / "fake_engine.py")

PRELUDE = """
import sys, time
from dataclasses import dataclass
from harness.serve.engines.base import Engine
from harness.serve.server import LifecycleOptions, Server
from harness.config.spec import ServerSpec

@dataclass(frozen=True)
class Fake(Engine):
    name: str = "fake"
    startup_timeout: float = 60.0
    def command(self, spec, host, port):
        return [sys.executable, {fake!r}, "--host", host, "--port", str(port), *spec.args]

SPEC = ServerSpec("tiny", "cfg", "fake/model", engine="fake",
                  args=("--spawn-child", "--spawn-orphan", "--pid-file", {pid_file!r}))
OPTIONS = LifecycleOptions(grace_period=5.0, poll_interval=0.1)
"""

BODIES = {
    "with-block": """
def test_sleeps(tmp_path):
    with Server(SPEC, Fake(), log_dir=tmp_path, options=OPTIONS):
        time.sleep(120)
""",
    "session-fixture": """
import pytest

@pytest.fixture(scope="session")
def server(tmp_path_factory):
    with Server(SPEC, Fake(), log_dir=tmp_path_factory.mktemp("logs"), options=OPTIONS) as s:
        yield s

def test_sleeps(server):
    time.sleep(120)
""",
    "never-stopped": """
def test_sleeps(tmp_path):
    Server(SPEC, Fake(), log_dir=tmp_path, options=OPTIONS).start()  # no stop: only the safety net is left
    time.sleep(120)
""",
}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_inner_pytest_and_signal(tmp_path: Path, body: str, signum: int) -> tuple[int, list[int], str]:
    """Start the inner pytest, wait for the engine's pid file, send `signum` to pytest once it sleeps.

    Returns pytest's exit status, the engine pids still alive after pytest exited, and pytest's output.
    Survivors are killed afterwards, so a failing test leaves nothing behind either.
    """
    pid_file = tmp_path / "pids.json"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(PRELUDE.format(fake=FAKE_ENGINE, pid_file=str(pid_file)) + textwrap.dedent(BODIES[body]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider", "-s"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # our own test process must not see the signal
    )
    engine_pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists():
            if inner.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"inner pytest never started the server:\n{inner.communicate()[0]}")
            time.sleep(0.1)
        pids = json.loads(pid_file.read_text())
        engine_pids = [pids["server"], *pids["children"], *pids["orphans"]]
        assert len(engine_pids) == 3 and all(alive(pid) for pid in engine_pids)
        inner.send_signal(signum)
        output, _ = inner.communicate(timeout=60)
        leftover = [pid for pid in engine_pids if alive(pid)]
    finally:
        if inner.poll() is None:  # the test failed: do not leave the inner pytest or its server behind
            os.killpg(inner.pid, signal.SIGKILL)
            inner.wait()
        for pid in engine_pids:
            if alive(pid):
                psutil.Process(pid).kill()
    return inner.returncode, leftover, output


@pytest.mark.parametrize("body", ["with-block", "session-fixture", "never-stopped"])
def test_sigint_to_pytest_kills_the_server(tmp_path, body):
    status, leftover, output = run_inner_pytest_and_signal(tmp_path, body, signal.SIGINT)
    assert "KeyboardInterrupt" in output, output
    assert status == 2, output  # pytest's "interrupted"
    assert leftover == [], f"still running after Ctrl-C ({body}): {leftover}\n{output}"


def test_sigterm_to_pytest_kills_the_server(tmp_path):
    status, leftover, output = run_inner_pytest_and_signal(tmp_path, "session-fixture", signal.SIGTERM)
    assert status == -signal.SIGTERM, output  # died of the signal, after the handler killed the server group
    assert leftover == [], f"still running after SIGTERM: {leftover}\n{output}"


def test_ctrl_c_during_an_eval_lets_every_task_on_the_loop_run_its_cleanup():
    """LiveServer.run, interrupted: the eval and the streams it started are cancelled and their finally blocks run
    (an eval's bench_serving driver is closed there); none is left pending on the loop, where each would print
    "Task was destroyed but it is pending!" at exit."""
    import asyncio

    from harness.serve.pool import LiveServer

    class Running:  # a server whose process is still there
        def exit_status(self):
            return None

    cleaned = []

    async def stream(k):
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append(str(k))

    async def an_eval():
        streams = [asyncio.ensure_future(stream(k)) for k in range(3)]
        try:
            await asyncio.gather(*streams)
        finally:
            cleaned.append("eval")

    def ctrl_c():
        raise KeyboardInterrupt

    loop = asyncio.new_event_loop()
    try:
        loop.call_later(0.2, ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            LiveServer(spec=None, server=Running(), client=None, loop=loop, info={}).run(an_eval())
        assert sorted(cleaned) == ["0", "1", "2", "eval"]
        assert [task for task in asyncio.all_tasks(loop) if not task.done()] == []
    finally:
        loop.close()
