"""Process groups of launched servers: stop them for sure, and kill them even when the harness is interrupted.

Every server runs in its own session/process group, so one `killpg` reaches its workers, including those
re-parented to init after their parent died (SGLang's schedulers are). Descendants that started a session
of their own are tracked through psutil. A registry of live groups is killed at interpreter exit (atexit) and
on SIGTERM/SIGHUP, so an interrupted pytest never leaves a GPU server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time

import psutil

from harness.errors import HarnessError


class ServerTeardownError(HarnessError):
    """Processes survived SIGKILL or the port stayed bound after stop."""


# -- process groups ------------------------------------------------------------------------------------------


def terminate_group(process: subprocess.Popen, grace_period: float) -> list[str]:
    """SIGTERM the group, wait, SIGKILL what is left (group members and descendants that left it), reap.

    Returns a description of processes still alive after SIGKILL (empty on success).
    """
    pgid = process.pid  # start_new_session made the leader's pid the group id
    watched = _tree_and_group(process.pid, pgid)
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_period
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_period)
    _, alive = psutil.wait_procs(watched, timeout=max(deadline - time.monotonic(), 0))
    alive += [p for p in _group_members(pgid) if p not in alive]
    if process.poll() is None or alive:
        _signal_group(pgid, signal.SIGKILL)
        for proc in alive:
            _kill_quietly(proc)
    process.wait()  # reap the leader
    _, alive = psutil.wait_procs(alive, timeout=5)
    return [f"pid {p.pid} ({_name(p)})" for p in alive if _is_live(p)]


def kill_group_now(pgid: int, settle: float = 2.0) -> None:
    """SIGKILL a group and its leader's descendants, with no grace period (the safety net's and interrupts'
    path), then wait up to `settle` s for them to be gone: SIGKILL is delivered asynchronously, and a caller
    about to exit must not leave a server that is still running (seen as a CI flake)."""
    procs = _tree_and_group(pgid, pgid)
    for proc in procs:
        _kill_quietly(proc)
    _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        psutil.wait_procs(procs, timeout=settle)  # also reaps those that are our children


def _tree_and_group(pid: int, pgid: int) -> list[psutil.Process]:
    procs: dict[int, psutil.Process] = {p.pid: p for p in _group_members(pgid)}
    with contextlib.suppress(psutil.NoSuchProcess):
        procs.update({p.pid: p for p in psutil.Process(pid).children(recursive=True)})
    procs.pop(pid, None)  # the leader is waited for through its Popen
    return list(procs.values())


def _group_members(pgid: int) -> list[psutil.Process]:
    """Live processes in the group, including ones re-parented to init after their parent died."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and _is_live(proc):
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _signal_group(pgid: int, sig: int) -> None:
    # ProcessLookupError: the group is already empty (a zombie leader only counts as gone)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_quietly(proc: psutil.Process) -> None:
    with contextlib.suppress(psutil.Error):
        proc.kill()


def _is_live(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"


# -- safety net: groups still alive when the interpreter exits or is told to stop ----------------------------

_LIVE: dict[int, int] = {}  # pgid -> pid of the harness process that launched it
_LIVE_LOCK = threading.Lock()
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def register(pgid: int) -> None:
    """Remember a launched group until `unregister`; installs the signal handlers on first use."""
    with _LIVE_LOCK:
        _LIVE[pgid] = os.getpid()
    _install_signal_handlers()


def unregister(pgid: int) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(pgid, None)


def kill_live_servers() -> None:
    """Kill every group this process launched and has not stopped (forked children leave them alone)."""
    with _LIVE_LOCK:
        groups = [pgid for pgid, owner in _LIVE.items() if owner == os.getpid()]
        _LIVE.clear()
    for pgid in groups:
        kill_group_now(pgid)


_FATAL_CALLBACKS: list = []  # run after the servers are killed, before dying: the report's last rows


def on_fatal_signal(callback):
    """Call `callback(signum)` on SIGTERM/SIGHUP, after the live servers are killed (the report closes there).
    Returns a function that unregisters it."""
    _FATAL_CALLBACKS.append(callback)
    _install_signal_handlers()
    return lambda: _FATAL_CALLBACKS.remove(callback) if callback in _FATAL_CALLBACKS else None


def _on_fatal_signal(signum, frame) -> None:
    kill_live_servers()
    for callback in _FATAL_CALLBACKS:
        with contextlib.suppress(Exception):  # dying anyway: a failing callback must not keep servers alive
            callback(signum)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die of the same signal, as if we had not been here


def _install_signal_handlers() -> None:
    """Only on the main thread, and only where nobody else (pytest plugins, the user) installed a handler."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _HANDLED_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _on_fatal_signal)


atexit.register(kill_live_servers)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def listens_on(pid: int, port: int | None) -> bool | None:
    """Whether `pid` or a descendant has a listening socket on `port`; None when the OS does not tell us."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for proc in procs:
        try:
            sockets = proc.net_connections("inet") if hasattr(proc, "net_connections") else proc.connections("inet")
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            return None
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in sockets):
            return True
    return False


def port_holders(port: int | None) -> str:
    """'pid 123 (python)' for each process the OS says uses `port`, else 'another process'."""
    try:
        pids = sorted({c.pid for c in psutil.net_connections("inet") if c.laddr and c.laddr.port == port and c.pid})
    except psutil.Error:
        pids = []
    return ", ".join(
        f"pid {pid} ({_name(psutil.Process(pid)) if psutil.pid_exists(pid) else '?'})" for pid in pids
    ) or ("another process")


def wait_port_free(host: str, port: int | None, timeout: float, what: str = "server") -> None:
    if port is None:
        return
    deadline = time.monotonic() + timeout
    while not port_is_free(host, port):
        if time.monotonic() >= deadline:
            raise ServerTeardownError(f"{what}: port {host}:{port} still in use after stop ({port_holders(port)})")
        time.sleep(0.1)
