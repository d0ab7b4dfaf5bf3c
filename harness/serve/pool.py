"""One live server at a time, shared by every suite of its (model, config), and the per-test run object.

The plugin sorts tests so each server's tests are adjacent; the pool starts a server when the first of
them needs it and stops it after the last, before the next server starts (so GPUs are free again). A launch
that fails is remembered, and that config's remaining tests fail at once with the same log tail instead of
launching again.

While an eval runs, its server is watched: a launched process that exits cancels the eval at once
(`ServerDied`, with the exit code, the likely cause and the log tail), and a request that got no answer is
followed by one health probe, so a hung or vanished server (also an attached one) reads as
`ServerUnresponsive` rather than as a request error. Either way the pool stops the server and the config's
remaining tests fail at once with the same reason.

An attached server is first compared with what its config declares (harness.serve.attach_check): a difference
fails every test of the config, as a failed launch does.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.client.http import Client, ClientOptions, RequestFailed
from harness.config.spec import ServerSpec
from harness.serve.attach_check import AttachCheck, compare_server
from harness.serve.server import ServerLost, ServerUnresponsive

WATCH_INTERVAL_S = 0.25  # how often a running eval checks its server's process is still there
CANCEL_TIMEOUT_S = 5.0  # after Ctrl-C, how long the loop's tasks get to run their cleanup


@dataclass(frozen=True)
class Case:
    """One test's target: a server spec plus the suite's knobs for that config."""

    spec: ServerSpec
    suite: str
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class PoolSettings:
    engine_override: str | None
    base_url: str | None
    log_dir: Path
    gpu_ids: tuple[str, ...]
    client_options: ClientOptions
    startup_timeout: float | None = None


REFERENCE_ARGS = ("--device", "cpu", "--dtype", "float32")


@dataclass
class LiveServer:
    spec: ServerSpec
    server: Any
    client: Client
    loop: asyncio.AbstractEventLoop
    info: dict[str, Any]
    stack: contextlib.ExitStack | None = None
    settings: PoolSettings | None = None
    attach_check: AttachCheck | None = None  # attached: what was compared with the config
    _reference: Client | None = None

    def run(self, coro):
        """Run an eval's coroutine; a server that dies or stops answering meanwhile raises `ServerLost`."""
        try:
            return self.loop.run_until_complete(self._watched(coro))
        except KeyboardInterrupt:
            self._cancel_pending()
            raise
        except RequestFailed as exc:
            lost = self.diagnose(exc)
            if lost is None:
                raise
            raise lost from exc

    async def _watched(self, coro):
        task = asyncio.ensure_future(coro)  # interrupted, run() cancels it with every other task (_cancel_pending)
        while not task.done():
            await asyncio.wait({task}, timeout=WATCH_INTERVAL_S)
            if not task.done() and self.server.exit_status() is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise self.server.died()
        return task.result()

    def _cancel_pending(self) -> None:
        """After Ctrl-C: cancel every task left on the loop and let each run its cleanup (an eval's finally: its
        streams closed, its bench_serving driver reaped), as asyncio.run does. Without it they were destroyed
        pending at exit, printing "Task was destroyed but it is pending!" per stream (the H200, 2026-12-04)."""
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending, timeout=CANCEL_TIMEOUT_S))

    def diagnose(self, exc: RequestFailed) -> ServerLost | None:
        """After a request got no answer: is the server gone (exited, or not answering /health)? None if not."""
        if self.server.exit_status() is not None:
            return self.server.died()
        if not exc.no_response:
            return None
        status, answer = self.server.health()
        if status == 200:
            return None
        probe = f"GET {self.server.engine.health_path}: {answer}"
        return ServerUnresponsive(
            "server stopped answering",
            cause=f"{exc}; {probe}",
            log_path=self.server.log_path,
            log_tail=self.server.log_tail(),  # empty when attached: there is no log to read
        )

    def reference_client(self) -> Client:
        """The HF reference engine on the same weights (CPU fp32), started on first use, stopped with this server."""
        if self._reference is None:
            from harness.serve.engines import get_engine
            from harness.serve.server import Server

            spec = ServerSpec(
                model=self.spec.model,
                config=f"{self.spec.config}-hf-reference",
                model_path=self.spec.model_path,
                engine="hf",
                args=REFERENCE_ARGS,
                tokenizer_path=self.spec.tokenizer_path,
            )
            server = self.stack.enter_context(Server(spec, get_engine("hf"), log_dir=self.settings.log_dir, gpu_ids=()))
            client = Client(server.base_url, self.settings.client_options)
            self.stack.callback(lambda: self.loop.run_until_complete(client.close()))
            self._reference = client
        return self._reference


@dataclass(frozen=True)
class Plan:
    """How one spec is served here, resolved once: the engine (or attach), the GPUs it takes, and for a
    deployment its members (harness.serve.deployment)."""

    spec: ServerSpec
    engine_name: str
    gpus: int

    @property
    def attached(self) -> bool:
        return self.engine_name == "attach"

    @property
    def deployment(self):
        return None if self.attached else self.spec.deployment

    def engine(self, name: str | None = None):
        """The plan's engine, or a member's (the pd router is no config's engine, so not in the registry)."""
        from harness.serve.engines import get_engine
        from harness.serve.engines.sglang import SGLangRouterEngine

        return SGLangRouterEngine() if name == "sglang-router" else get_engine(name or self.engine_name)

    def preflight(self) -> list[str]:
        """Reject the spec (every member's launch line, for a deployment); the warnings to report."""
        if self.deployment is not None:
            from harness.serve.deployment.plan import preflight

            results = preflight(self.spec, self.engine)
        else:
            results = [self.engine().preflight(self.spec)]
        return [w for result in results for w in (getattr(result, "warnings", None) or [])]

    def skip_reason(self, have_gpus: int) -> str | None:
        if self.gpus > have_gpus:
            return (
                f"{self.spec.id} needs {self.gpus} GPU(s), {have_gpus} available "
                "(--harness-gpus / CUDA_VISIBLE_DEVICES)"
            )
        if self.deployment is not None:
            from harness.serve.deployment.plan import skip_reason

            return skip_reason(self.spec)
        return None

    def launch(self, settings: PoolSettings):
        """The server (or deployment) for this spec, not started yet."""
        from harness.serve.server import Server

        if self.attached:
            return Server.attach(settings.base_url, spec=self.spec)
        spec = _replace(self.spec, startup_timeout=settings.startup_timeout) if settings.startup_timeout else self.spec
        gpu_ids = settings.gpu_ids[: self.gpus]
        if self.deployment is not None:
            from harness.serve.deployment.lifecycle import Deployment

            return Deployment(spec, self.engine, log_dir=settings.log_dir, gpu_ids=gpu_ids)
        return Server(spec, self.engine(), log_dir=settings.log_dir, gpu_ids=gpu_ids)


class ServerPool:
    def __init__(self, settings: PoolSettings, on_started=None):
        self.settings = settings
        self.on_started = on_started or (lambda spec, live: None)
        self.current: LiveServer | None = None
        self._stack: contextlib.ExitStack | None = None
        self.failures: dict[str, BaseException] = {}
        self.preflight_warnings: dict[str, list[str]] = {}
        self._plans: dict[str, Plan] = {}

    def plan(self, spec: ServerSpec) -> Plan:
        """The spec's plan, resolved on first use (engine override or attach applied once, here)."""
        if spec.id not in self._plans:
            from harness.serve.engines import get_engine

            name = "attach" if self.settings.base_url else self.settings.engine_override or spec.engine
            if name not in ("attach", spec.engine):
                spec = _replace(spec, engine=name)  # members of a deployment take the override too
            if name == "attach":
                gpus = 0
            elif spec.deployment is not None:
                gpus = max(spec.gpus, spec.deployment.gpus)
            else:
                gpus = get_engine(name).gpus_needed(spec)
            self._plans[spec.id] = Plan(spec, name, gpus)
        return self._plans[spec.id]

    def engine_for(self, spec: ServerSpec) -> str:
        return self.plan(spec).engine_name

    def gpus_needed(self, spec: ServerSpec) -> int:
        return self.plan(spec).gpus

    def skip_reason(self, spec: ServerSpec) -> str | None:
        """Why this spec cannot run here (too few GPUs, a missing deployment dependency), or None."""
        return self.plan(spec).skip_reason(len(self.settings.gpu_ids))

    def preflight(self, spec: ServerSpec) -> None:
        """Reject a bad config before anything launches, also where it could not run (too few GPUs), once."""
        if spec.id in self.preflight_warnings:
            return
        if spec.id in self.failures:
            raise self.failures[spec.id]
        try:
            warnings = self.plan(spec).preflight()
        except Exception as exc:
            self.failures[spec.id] = exc
            raise
        self.preflight_warnings[spec.id] = warnings

    def acquire(self, spec: ServerSpec) -> LiveServer:
        if self.current is not None and self.current.spec.id == spec.id:
            if self.current.server.exit_status() is None:
                return self.current
            self.mark_lost(spec, self.current.server.died("between tests"))
        self.release()
        if spec.id in self.failures:
            raise self.failures[spec.id]
        try:
            self.current = self._start(spec)
        except Exception as exc:
            self.failures[spec.id] = exc
            raise
        self.on_started(spec, self.current)
        return self.current

    def _start(self, spec: ServerSpec) -> LiveServer:
        self.preflight(spec)
        stack = contextlib.ExitStack()
        try:
            server = stack.enter_context(self.plan(spec).launch(self.settings))
            attach_check = self._check_attached(spec, server)
            loop = asyncio.new_event_loop()
            client = Client(server.base_url, self.settings.client_options)
            stack.callback(loop.close)
            stack.callback(lambda: loop.run_until_complete(client.close()))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return LiveServer(
            spec=spec,
            server=server,
            client=client,
            loop=loop,
            info=dict(server.info or {}),
            stack=stack,
            settings=self.settings,
            attach_check=attach_check,
        )

    def _check_attached(self, spec: ServerSpec, server) -> AttachCheck | None:
        """Attached: the server must be what the config declares (`ServerMismatch` fails the config's tests)."""
        if not self.plan(spec).attached:
            return None
        check = compare_server(spec, server.info, server.model_info)
        check.raise_for_differences()
        return check

    def mark_lost(self, spec: ServerSpec, exc: ServerLost) -> None:
        """Stop (and reap) the lost server; its config's remaining tests then fail at once with this reason."""
        log = f" (log: {exc.log_path})" if exc.log_path else ""
        self.failures[spec.id] = type(exc)(f"not run: the {exc.summary}{log}", exit_code=exc.exit_code)
        self.release()

    def release(self) -> None:
        """Stop the current server (and reap it) if there is one."""
        stack, self._stack, self.current = self._stack, None, None
        if stack is not None:
            stack.close()


def _replace(spec: ServerSpec, **changes) -> ServerSpec:
    import dataclasses

    return dataclasses.replace(spec, **changes)
