"""A deployment's members as one server: started in order, watched together, stopped in reverse order.

`Deployment` offers what the session uses of a `Server` (base_url, info, version, engine, exit_status, died,
health, log_tail, log_path, stop), so a deployment is served, watched and torn down exactly as one server is.
Each member is a `Server` (own process group, port on 127.0.0.1, log file). A member that fails to start stops
the ones already up (reverse order) and the error names it; a member that exits while the suites run ends the
running eval with `member '<role>' of the <kind> deployment exited with code N` and that member's log tail.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.config.spec import ServerSpec
from harness.serve.deployment.plan import member_spec
from harness.serve.server import LifecycleOptions, Server, ServerDied, ServerStartError

# Members that serve no generation (encoders) are healthy when /health answers and have no /server_info.
NON_GENERATING_ROLES = ("encoder",)


class Deployment:
    def __init__(
        self,
        spec: ServerSpec,
        engine_for,
        *,
        log_dir: str | Path,
        gpu_ids: tuple[str, ...] | None,
        options: LifecycleOptions = LifecycleOptions(),
    ):
        """`engine_for(name)` gives a member's engine; `gpu_ids` are the config's, members index into them."""
        self.spec = spec
        self.engine_for = engine_for
        self.log_dir = Path(log_dir)
        self.gpu_ids = gpu_ids
        self.options = options
        self.members: list[Server] = []
        self.dead: Server | None = None

    # -- the front member is what the suites talk to ---------------------------------------------------------------
    @property
    def front(self) -> Server:
        return self.members[-1]

    @property
    def base_url(self) -> str:
        return self.front.base_url

    @property
    def info(self) -> dict:
        return self.front.info

    @property
    def model_info(self) -> dict:
        return self.front.model_info

    @property
    def version(self) -> str:
        return self.front.version

    @property
    def engine(self):
        return self.front.engine

    @property
    def startup_s(self) -> float | None:
        times = [m.startup_s for m in self.members if m.startup_s is not None]
        return sum(times) if times else None

    @property
    def log_path(self) -> Path | None:
        return (self.dead or self.front).log_path

    @property
    def pid(self) -> int | None:
        return self.front.pid

    @property
    def command(self) -> list[str]:
        return self.front.command

    def describe(self) -> dict:
        """What the report records: kind and, per member, role, URL, command and log."""
        return {
            "kind": self.spec.deployment.kind,
            "members": [
                {"role": m.role, "url": s.base_url, "command": s.shown_command, "log": str(s.log_path)}
                for m, s in zip(self.spec.deployment.members, self.members)
            ],
        }

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def __enter__(self) -> Deployment:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> Deployment:
        members = self.spec.deployment.members
        try:
            for index, member in enumerate(members):
                line = member_spec(self.spec, index, [server.base_url for server in self.members])
                engine = self.engine_for(line.engine)
                if member.role in NON_GENERATING_ROLES:
                    engine = dataclasses.replace(engine, health_path="/health", requires_server_info=False)
                gpu_ids = None if self.gpu_ids is None else tuple(self.gpu_ids[i] for i in member.gpus)
                server = Server(line, engine, log_dir=self.log_dir, gpu_ids=gpu_ids, options=self.options)
                try:
                    server.start()
                except ServerStartError as exc:
                    raise ServerStartError(
                        f"{self.spec.id}: {self.spec.deployment.kind} member '{member.role}' "
                        f"({index + 1} of {len(members)}) did not start\n{exc}",
                        exit_code=exc.exit_code,
                        log_tail=exc.log_tail,
                    ) from exc
                self.members.append(server)
        except BaseException:  # KeyboardInterrupt included: stop what is up, newest first
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every member, newest first; every one is stopped even when one of them fails to stop."""
        errors = []
        for server in reversed(self.members):
            try:
                server.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    @property
    def clean_stop(self) -> bool:
        return all(server.clean_stop for server in self.members)

    # -- while running -----------------------------------------------------------------------------------------------
    def exit_status(self) -> int | None:
        """The exit code of the first member found exited (remembered as `dead`); None while all run."""
        for server in self.members:
            code = server.exit_status()
            if code is not None:
                self.dead = server
                return code
        return None

    def died(self, when: str = "") -> ServerDied:
        server = self.dead or next((s for s in self.members if s.exit_status() is not None), self.front)
        role = self.spec.deployment.members[self.members.index(server)].role
        lost = server.died(when)
        what = f"member '{role}' of the {self.spec.deployment.kind} deployment exited with code {server.exit_code}"
        return ServerDied(
            what + (f" {when}" if when else ""),
            cause=lost.cause,
            exit_code=lost.exit_code,
            log_path=lost.log_path,
            log_tail=lost.log_tail,
        )

    def health(self) -> tuple[int | None, str]:
        return self.front.health()

    def log_tail(self, lines: int | None = None) -> str:
        return (self.dead or self.front).log_tail(lines)

    def check_alive(self) -> None:
        if self.exit_status() is not None:
            raise self.died("while in use")

    def __repr__(self) -> str:
        return f"<Deployment {self.spec.id} {self.spec.deployment.kind} {len(self.members)} up>"
