"""The one server lifecycle every engine uses: launch, wait until healthy, learn what it is, stop and reap.

    with Server(spec, get_engine("sglang"), log_dir=run_dir / "logs", gpu_ids=("0", "1")) as server:
        server.base_url, server.info, server.version ...
    with Server.attach("http://node-7:30000") as server: ...          # launches and kills nothing

Launch: a free port on 127.0.0.1, the engine's command in its own process group (start_new_session), its
stdout+stderr in `<log_dir>/<model>__<config>.log`. Ready when the engine's health path answers 200; if the
process exits first, `ServerStartError` at once with the exit code, the command and the last 50 log lines;
on timeout the same, after killing it. Then /server_info and /model_info (or their /get_ spellings) are read.

Stop: SIGTERM to the group, a grace period, SIGKILL to the group and to any descendant that left it, reap,
then confirm the port is free. SGLang answers SIGTERM by killing its own tree with SIGKILL, so exit status
-9 after our SIGTERM is a clean stop. A pytest interrupted with Ctrl-C unwinds through `__exit__`; as a
safety net, live process groups are also killed at interpreter exit (atexit) and on SIGTERM/SIGHUP.

Only the stdlib and psutil, so it runs anywhere the harness core does (the async client lives elsewhere).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.spec import ServerSpec
from harness.errors import ConfigError, HarnessError
from harness.serve import process_group
from harness.serve.engines.attach import AttachEngine
from harness.serve.engines.base import Engine
from harness.serve.gpus import cuda_visible_devices
from harness.serve.process_group import (
    ServerTeardownError,
    free_port,
    kill_group_now,
    listens_on,
    port_holders,
    terminate_group,
    wait_port_free,
)
from harness.serve.secrets import scrub, scrub_command, scrub_url
from harness.serve.server_io import get_first_json, masked_env, normalise_url, probe, read_tail, unused_log_path

# Exit statuses that mean "stopped because we asked": SIGTERM/SIGKILL, directly or via a shell wrapper.
CLEAN_STOP_CODES = {0, -signal.SIGTERM, -signal.SIGKILL, 128 + signal.SIGTERM, 128 + signal.SIGKILL}


class ServerStartError(HarnessError):
    """The server did not become healthy: it exited, timed out or is unreachable. The message has the log tail."""

    def __init__(self, message: str, *, exit_code: int | None = None, log_tail: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.log_tail = log_tail


class ServerStartTimeout(ServerStartError):
    """Still not healthy when the engine's startup timeout ran out (the process was killed)."""


class NothingAnswers(ServerStartError):
    """Attach: the URL refuses connections (or its host has no address); `detail` is the line without the id."""

    def __init__(self, spec_id: str, detail: str):
        super().__init__(f"{spec_id}: {detail}")
        self.detail = detail


class ServerLost(HarnessError):
    """The server stopped serving while in use: its process exited, or it stopped answering.

    The session turns it into one verdict line for the running test and fails the config's remaining tests
    at once with it, instead of letting each wait out its retries against a dead port.
    """

    def __init__(
        self,
        what: str,
        *,
        cause: str | None = None,
        exit_code: int | None = None,
        log_path: Path | None = None,
        log_tail: str = "",
    ):
        self.what, self.cause = what, cause  # "server exited with code -9", "torch.OutOfMemoryError: ..."
        self.exit_code = exit_code
        self.log_path = log_path
        self.log_tail = log_tail
        details = [self.summary]
        if log_path:
            details.append(f"log: {log_path}")
        if log_tail:
            details += [f"--- last {len(log_tail.splitlines())} log lines ---", log_tail]
        super().__init__("\n".join(details))

    @property
    def summary(self) -> str:
        return self.what + (f": {self.cause}" if self.cause else "")


class ServerDied(ServerLost):
    """The launched process exited while it was in use."""


class ServerUnresponsive(ServerLost):
    """Requests got no answer and the health probe failed too (a hung server, or an attached one gone)."""


# The line of a log that most likely says why a server died: a Python exception's last line, the CUDA OOM, a
# signal. Shown in the one-line verdict, so the reason is read without opening the log.
_CAUSE_RE = re.compile(
    r"^\s*([\w.]*(Error|Exception|Interrupt)\b:?.*"
    r"|.*\b(out of memory|Segmentation fault|Killed|Address already in use)\b.*)$",
    re.IGNORECASE,
)


def _refused(probe_answer: str) -> bool:
    """A probe that found no listener, or no such host: not a server that is slow to start."""
    return probe_answer.startswith(("ConnectionRefusedError", "gaierror"))


def likely_cause(log_text: str) -> str | None:
    """The last log line naming an error (`torch.OutOfMemoryError: CUDA out of memory. Tried to ...`), or None."""
    for line in reversed(log_text.splitlines()):
        if _CAUSE_RE.match(line):
            return line.strip()[:300]
    return None


@dataclass(frozen=True)
class LifecycleOptions:
    """Timings of the lifecycle; the defaults suit SGLang, tests shorten them."""

    host: str = "127.0.0.1"
    grace_period: float = 30.0  # SIGTERM -> SIGKILL; SGLang drains requests and tears down NCCL in this time
    poll_interval: float = 0.5
    probe_timeout: float = 5.0  # per health request, as sglang's own test helper uses
    port_free_timeout: float = 10.0
    tail_lines: int = 50
    # Attach: how long a refused connection is retried (a server restarting on its port) before "nothing answers".
    # One attaches to a server that is up: a refusal means nothing listens there, not a slow start (an SGLang still
    # loading its weights refuses too; wait for its /health before attaching). Timeouts and 503s are still waited out.
    refused_grace: float = 3.0


class Server:
    """One running (or attached) server. A context manager; `start()`/`stop()` for explicit use."""

    def __init__(
        self,
        spec: ServerSpec,
        engine: Engine,
        *,
        log_dir: str | Path = "reports/logs",
        gpu_ids: tuple[str, ...] | list[str] | None = None,
        base_url: str | None = None,
        options: LifecycleOptions = LifecycleOptions(),
    ):
        self.spec = spec
        self.engine = engine
        self.options = options
        self.log_dir = Path(log_dir)
        # None: inherit the parent's GPUs untouched; a tuple (even empty) becomes CUDA_VISIBLE_DEVICES.
        self.gpu_ids = None if gpu_ids is None else tuple(str(g) for g in gpu_ids)
        self.attached = base_url is not None
        if self.attached:
            self.base_url = normalise_url(base_url)
        elif not self.engine.launches:
            raise ConfigError(f"{spec.id}: engine {self.engine.name!r} launches nothing; give a base URL to attach")
        else:
            self.base_url = ""
        self.port: int | None = None
        self.command: list[str] = []
        self.log_path: Path | None = None
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None  # kept after stop, so callers can check the process is gone
        self.exit_code: int | None = None
        self.died_early = False  # exited on its own before stop(); check_alive() raises for it
        self.startup_s: float | None = None
        self.info: dict[str, Any] = {}
        self.model_info: dict[str, Any] = {}
        self.version = ""

    @classmethod
    def attach(cls, base_url: str, spec: ServerSpec | None = None, options: LifecycleOptions = LifecycleOptions()):
        """A server started elsewhere: checks health and reads /server_info; never launches or kills."""
        url = normalise_url(base_url)
        spec = spec or ServerSpec(model="attached", config=url.split("://", 1)[1], model_path="", engine="attach")
        return cls(spec, AttachEngine(), base_url=url, options=options)

    # -- context manager --------------------------------------------------------------------------------------
    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- start ------------------------------------------------------------------------------------------------
    def start(self) -> Server:
        started = time.monotonic()
        try:
            if not self.attached:
                self._launch()
            self._wait_healthy(self.engine.startup_timeout_for(self.spec), started)
            self.startup_s = time.monotonic() - started
            self._read_info()
        except BaseException as exc:  # KeyboardInterrupt included: never leave a half-started server behind
            try:
                self.stop()
            except Exception as stop_exc:
                exc.add_note(f"and stopping it failed too: {stop_exc!r}")
            raise
        return self

    def _launch(self) -> None:
        needed = self.engine.gpus_needed(self.spec)
        if self.gpu_ids is not None and len(self.gpu_ids) < needed:
            raise ConfigError(f"{self.spec.id}: needs {needed} GPU(s), was given {len(self.gpu_ids)}: {self.gpu_ids}")
        self.port = free_port(self.options.host)
        self.base_url = f"http://{self.options.host}:{self.port}"
        self.command = [str(part) for part in self.engine.command(self.spec, self.options.host, self.port)]
        overrides = {**self.engine.environment(self.spec), **self.spec.env}
        if self.gpu_ids is not None:
            overrides.update(cuda_visible_devices(self.gpu_ids))
        self.log_path = unused_log_path(self.log_dir, self.spec.slug)
        with open(self.log_path, "wb") as log:
            log.write(f"# {self.spec.id} via {self.engine.name}: {self.shown_command}\n".encode())
            log.write(f"# environment overrides: {json.dumps(masked_env(overrides), sort_keys=True)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **overrides},
                start_new_session=True,  # its own process group: one killpg reaches every worker
            )
        self.pid = self.process.pid
        process_group.register(self.process.pid)

    def _wait_healthy(self, timeout: float, started: float) -> None:
        url = self.base_url + self.engine.health_path
        deadline = started + timeout
        last = "no answer yet"
        while True:
            if self.process is not None and self.process.poll() is not None:
                self.exit_code = self.process.returncode
                tail = self.log_tail()
                cause = likely_cause(tail)
                raise ServerStartError(
                    self._failure(f"exited with code {self.exit_code} while starting", started, cause),
                    exit_code=self.exit_code,
                    log_tail=tail,
                )
            remaining = deadline - time.monotonic()
            status, last = probe(url, min(self.options.probe_timeout, max(remaining, 0.1)))
            refused_for = time.monotonic() - started if self.attached and _refused(last) else None
            if refused_for is not None and (refused_for >= self.options.refused_grace or last.startswith("gaierror")):
                raise NothingAnswers(
                    self.spec.id,
                    f"nothing answers at {scrub_url(self.base_url)} ({last}): is the server running there? "
                    "Check --harness-base-url (or HARNESS_BASE_URL)",
                )
            if status == 200 and self._answered_by_us():
                return
            if status == 200:  # someone else holds the port (free_port raced another launch): not our server
                last = (
                    "HTTP 200 from a process that is not the launched server "
                    f"(port {self.port} is held by {port_holders(self.port)})"
                )
            if time.monotonic() >= deadline:
                what = "did not answer" if self.attached else "was killed: it did not become healthy"
                raise ServerStartTimeout(
                    self._failure(f"{what} at {scrub_url(url)} within {timeout:g} s (last probe: {last})", started),
                    log_tail=self.log_tail(),
                )
            self._pause(min(self.options.poll_interval, max(deadline - time.monotonic(), 0)))

    def _answered_by_us(self) -> bool:
        """True unless the port's listener is known not to be the launched process or one of its descendants."""
        if self.process is None:  # attached: whoever answers is the server
            return True
        listening = listens_on(self.process.pid, self.port)
        return listening is not False

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake as soon as the process exits so a crash is reported at once."""
        if self.process is None:
            time.sleep(seconds)
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=seconds)

    def _failure(self, what: str, started: float, cause: str | None = None) -> str:
        lines = [
            f"{self.spec.id}: {self.engine.name} server {what} (after {time.monotonic() - started:.1f} s)"
            + (f": {cause}" if cause else "")
        ]
        if self.command:
            lines.append(f"command: {self.shown_command}")
        if self.log_path:
            lines += [f"log: {self.log_path}", f"--- last {self.options.tail_lines} log lines ---", self.log_tail()]
        return "\n".join(lines)

    def _read_info(self) -> None:
        info = get_first_json(self.base_url, self.engine.server_info_paths, self.options.probe_timeout * 6)
        if info is None and self.engine.requires_server_info:
            raise ServerStartError(
                f"{self.spec.id}: {scrub_url(self.base_url)} is healthy but none of "
                f"{', '.join(self.engine.server_info_paths)} answered with JSON"
            )
        self.info = info or {}
        self.model_info = get_first_json(self.base_url, self.engine.model_info_paths, self.options.probe_timeout) or {}
        self.version = self.engine.describe_version(self.info)

    @property
    def shown_command(self) -> str:
        """The command as logs and errors show it: API keys and tokens masked."""
        return shlex.join(scrub_command(self.command))

    # -- while running ----------------------------------------------------------------------------------------
    def log_tail(self, lines: int | None = None) -> str:
        """The last lines of the server's log, token-like values masked (they end up in CI output)."""
        return scrub(read_tail(self.log_path, lines or self.options.tail_lines)) if self.log_path else ""

    def exit_status(self) -> int | None:
        """The launched process's exit code once it has exited on its own; None while it runs (or attached)."""
        if self.process is None or self.process.poll() is None:
            return None
        self.exit_code = self.process.returncode
        return self.exit_code

    def died(self, when: str = "") -> ServerDied:
        """The error for a launched process that exited: its code, the likely cause and the log tail."""
        tail = self.log_tail()
        what = f"server exited with code {self.exit_code}" + (f" {when}" if when else "")
        return ServerDied(
            what, cause=likely_cause(tail), exit_code=self.exit_code, log_path=self.log_path, log_tail=tail
        )

    def health(self) -> tuple[int | None, str]:
        """One probe of the engine's health path: (HTTP status or None, what answered)."""
        return probe(self.base_url + self.engine.health_path, self.options.probe_timeout)

    def check_alive(self) -> None:
        """Raise ServerDied (with the log tail) if the launched process has exited."""
        if self.exit_status() is not None:
            raise self.died("while in use")

    # -- stop -------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop and reap the launched process group, then confirm the port is free. Idempotent."""
        process = self.process
        if process is None:
            return
        try:
            self.died_early = process.poll() is not None  # gone before we asked: a crash or the OOM killer
            survivors = terminate_group(process, self.options.grace_period)
        except BaseException:  # interrupted while waiting out the grace period: do not wait again
            kill_group_now(process.pid)
            raise
        finally:
            if process.poll() is not None:
                self.exit_code = process.returncode
                process_group.unregister(process.pid)
        self.process = None
        if survivors:
            raise ServerTeardownError(f"{self.spec.id}: processes survived SIGKILL: {survivors}")
        wait_port_free(self.options.host, self.port, self.options.port_free_timeout, what=self.spec.id)

    @property
    def clean_stop(self) -> bool:
        """Stopped by us with an expected status (SGLang's -9 after our SIGTERM included)."""
        return not self.died_early and self.exit_code in CLEAN_STOP_CODES

    def __repr__(self) -> str:
        state = "attached" if self.attached else ("running" if self.process else "stopped")
        return f"<Server {self.spec.id} {self.engine.name} {self.base_url or '-'} {state}>"
