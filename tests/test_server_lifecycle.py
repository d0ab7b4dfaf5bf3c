"""The Server lifecycle against real subprocesses (tests/servers/fake_engine.py): start, fail, stop, attach.

No timings are asserted: "a crash fails at once" is shown by a crash being reported as an exit (not as a
timeout) under a startup timeout of 5 s.
"""

from __future__ import annotations

import _thread
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from harness.config.spec import ServerSpec
from harness.errors import ConfigError
from harness.serve.engines import ENGINES, get_engine
from harness.serve.engines.attach import AttachEngine
from harness.serve.engines.base import Engine, check_model_path
from harness.serve.process_group import free_port, port_is_free
from harness.serve.server import (
    LifecycleOptions,
    Server,
    ServerDied,
    ServerStartError,
    ServerStartTimeout,
)

FAKE_ENGINE = str(Path(__file__).parent / "servers" / "fake_engine.py")
FAST = LifecycleOptions(grace_period=3.0, poll_interval=0.1, port_free_timeout=5.0)


@dataclass(frozen=True)
class FakeEngine(Engine):
    name: str = "fake"
    label: str = "fake"
    startup_timeout: float = 30.0

    def command(self, spec: ServerSpec, host: str, port: int) -> list[str]:
        return [sys.executable, FAKE_ENGINE, "--host", host, "--port", str(port), *spec.args]


def fake_spec(*args: str, timeout: float | None = None, config: str = "cfg") -> ServerSpec:
    return ServerSpec("tiny", config, "fake/model", engine="fake", args=tuple(args), startup_timeout=timeout)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_crash_at_startup_is_reported_at_once_with_the_log_tail(tmp_path):
    server = Server(fake_spec("--mode", "crash", timeout=5), FakeEngine(), log_dir=tmp_path, options=FAST)
    with pytest.raises(ServerStartError) as caught:
        server.start()
    error = caught.value
    assert not isinstance(error, ServerStartTimeout)  # seen as an exit, well inside the 5 s timeout
    assert error.exit_code == 3
    message = str(error)
    assert "tiny/cfg: fake server exited with code 3 while starting" in message
    assert f"{FAKE_ENGINE} --host 127.0.0.1 --port {server.port} --mode crash" in message
    assert "RuntimeError: fake CUDA out of memory" in message
    tail = message.split("--- last 50 log lines ---\n", 1)[1]
    assert len(tail.splitlines()) == 50
    assert "loading shard 79" in tail and "loading shard 10\n" not in tail
    assert server.log_path == tmp_path / "tiny__cfg.log"
    assert not alive(server.pid) and port_is_free("127.0.0.1", server.port)


def test_a_hang_times_out_and_is_killed(tmp_path):
    server = Server(fake_spec("--mode", "hang", timeout=1.5), FakeEngine(), log_dir=tmp_path, options=FAST)
    with pytest.raises(ServerStartTimeout) as caught:
        server.start()
    message = str(caught.value)
    assert "did not become healthy" in message and "within 1.5 s" in message
    assert "waiting for a collective that never comes" in message  # the log tail
    assert not alive(server.pid)


def test_health_503_is_waited_out_then_info_is_read(tmp_path):
    spec = fake_spec("--startup-delay", "1.0")
    with Server(spec, FakeEngine(), log_dir=tmp_path, options=FAST) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert server.info["version"] == "9.9.9-fake"
        assert server.model_info["model_type"] == "fake"
        assert server.version == "fake 9.9.9-fake"
        assert server.command[:2] == [sys.executable, FAKE_ENGINE]
        assert server.startup_s is not None and server.startup_s > 0
        server.check_alive()
    log = server.log_path.read_text()
    assert log.startswith("# tiny/cfg via fake: ") and "503" in log and "GET /health_generate" in log


def test_old_get_endpoints_are_the_fallback(tmp_path):
    with Server(fake_spec("--old-endpoints-only"), FakeEngine(), log_dir=tmp_path, options=FAST) as server:
        assert server.info["page_size"] == 1 and server.model_info["is_generation"] is True


def test_missing_server_info_fails_the_start_and_stops_the_process(tmp_path):
    engine = FakeEngine(server_info_paths=("/no_such_info",))
    server = Server(fake_spec(), engine, log_dir=tmp_path, options=FAST)
    with pytest.raises(ServerStartError, match="is healthy but none of /no_such_info answered"):
        server.start()
    assert not alive(server.pid) and port_is_free("127.0.0.1", server.port)


def test_engine_without_server_info_still_starts(tmp_path):
    engine = FakeEngine(server_info_paths=("/version",), requires_server_info=False)
    with Server(fake_spec(), engine, log_dir=tmp_path, options=FAST) as server:
        assert server.info == {} and server.version == "fake unknown"


def test_teardown_leaves_no_process_and_frees_the_port(tmp_path):
    pid_file = tmp_path / "pids.json"
    spec = fake_spec("--spawn-child", "--spawn-orphan", "--pid-file", str(pid_file))
    with Server(spec, FakeEngine(), log_dir=tmp_path, options=FAST) as server:
        pids = psutil.Process(server.pid).children(recursive=True)
        assert pids, "the fake engine should have a worker child"
        orphans = json.loads(pid_file.read_text())["orphans"]
        assert orphans and alive(orphans[0]) and psutil.Process(orphans[0]).ppid() != server.pid
    assert server.exit_code == -15 and server.clean_stop
    for pid in [server.pid, *(p.pid for p in pids), *orphans]:
        assert not alive(pid), f"pid {pid} survived teardown"
    assert port_is_free("127.0.0.1", server.port)


def test_sglang_style_exit_minus_9_after_sigterm_is_clean(tmp_path):
    with Server(fake_spec("--spawn-child", "--sglang-sigterm"), FakeEngine(), log_dir=tmp_path, options=FAST) as s:
        child = psutil.Process(s.pid).children()[0].pid
    assert s.exit_code == -9 and s.clean_stop
    assert not alive(child)


def test_ignored_sigterm_gets_sigkill_after_the_grace_period(tmp_path):
    options = LifecycleOptions(grace_period=0.5, poll_interval=0.1)
    with Server(fake_spec("--ignore-sigterm", "--spawn-child"), FakeEngine(), log_dir=tmp_path, options=options) as s:
        pass
    assert s.exit_code == -9 and not alive(s.pid)


def test_server_dying_in_use_is_reported(tmp_path):
    with Server(fake_spec(), FakeEngine(), log_dir=tmp_path, options=FAST) as server:
        psutil.Process(server.pid).kill()
        server.process.wait(timeout=10)
        with pytest.raises(ServerDied, match="exited with code -9 while in use"):
            server.check_alive()
    assert server.died_early and not server.clean_stop  # recorded; teardown still ran and reaped


def test_keyboard_interrupt_while_starting_still_kills_the_server(tmp_path):
    server = Server(
        fake_spec("--mode", "hang", "--spawn-child", timeout=60), FakeEngine(), log_dir=tmp_path, options=FAST
    )
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            server.start()
    finally:
        timer.cancel()
    assert server.pid is not None and not alive(server.pid)


def test_gpu_ids_become_cuda_visible_devices(tmp_path):
    with Server(fake_spec(), FakeEngine(), log_dir=tmp_path, gpu_ids=("2", "3"), options=FAST) as server:
        assert server.info["cuda_visible_devices"] == "2,3"
    with Server(fake_spec(config="cpu"), FakeEngine(), log_dir=tmp_path, gpu_ids=(), options=FAST) as server:
        assert server.info["cuda_visible_devices"] == ""


def test_too_few_gpu_ids_for_the_spec_is_a_config_error(tmp_path):
    spec = ServerSpec("tiny", "tp2", "fake/model", engine="fake", gpus=2)
    with pytest.raises(ConfigError, match=r"tiny/tp2: needs 2 GPU\(s\), was given 1"):
        Server(spec, FakeEngine(), log_dir=tmp_path, gpu_ids=("0",), options=FAST).start()


def test_a_second_server_of_the_same_config_gets_its_own_log(tmp_path):
    with (
        Server(fake_spec(), FakeEngine(), log_dir=tmp_path, options=FAST) as first,
        Server(fake_spec(), FakeEngine(), log_dir=tmp_path, options=FAST) as second,
    ):
        assert first.port != second.port
    assert (first.log_path.name, second.log_path.name) == ("tiny__cfg.log", "tiny__cfg.2.log")


# -- attach -------------------------------------------------------------------------------------------------


def test_attach_reads_info_and_kills_nothing(tmp_path):
    with Server(fake_spec("--spawn-child"), FakeEngine(), log_dir=tmp_path, options=FAST) as launched:
        with Server.attach(launched.base_url + "/", options=FAST) as attached:
            assert attached.attached and attached.base_url == launched.base_url
            assert attached.info["version"] == "9.9.9-fake"
            assert attached.version == "sglang 9.9.9-fake"  # attach assumes SGLang unless the server says
            assert attached.command == [] and attached.log_path is None
        assert alive(launched.pid)
        launched.check_alive()


def test_attach_to_nothing_times_out(tmp_path):
    spec = ServerSpec("remote", "x", "", engine="attach", startup_timeout=1.0)
    port = free_port()
    with pytest.raises(ServerStartTimeout, match=rf"did not answer at http://127.0.0.1:{port}/health within 1 s"):
        Server(spec, AttachEngine(), log_dir=tmp_path, base_url=f"http://127.0.0.1:{port}", options=FAST).start()


@pytest.mark.parametrize("url", ["127.0.0.1:30000", "ftp://host:1", "http://"])
def test_bad_base_url_is_a_config_error(url):
    with pytest.raises(ConfigError, match="expected http://host:port"):
        Server.attach(url)


# -- bad input ----------------------------------------------------------------------------------------------


def test_unknown_engine_names_the_closest_one(tmp_path):
    with pytest.raises(ConfigError) as caught:
        get_engine("sglnag", where="thresholds.yaml: models.tiny.configs.tp2.engine")
    assert str(caught.value) == (
        "thresholds.yaml: models.tiny.configs.tp2.engine: unknown engine 'sglnag' (did you mean 'sglang'?); "
        "valid choices: attach, hf, sglang, vllm"
    )
    spec = ServerSpec("m", "c", "org/m", engine="vlm")
    with pytest.raises(ConfigError, match="unknown engine 'vlm' \\(did you mean 'vllm'\\?\\)"):
        Server(spec, get_engine(spec.engine, where=f"{spec.id}: engine"), log_dir=tmp_path)
    assert sorted(ENGINES) == ["attach", "hf", "sglang", "vllm"]


def test_attach_engine_cannot_launch(tmp_path):
    with pytest.raises(ConfigError, match="launches nothing; give a base URL"):
        Server(ServerSpec("m", "c", "org/m", engine="attach"), AttachEngine(), log_dir=tmp_path)


@pytest.mark.parametrize(
    ("model_path", "problem"),
    [("", "model_path is empty"), ("/no/such/model", "is not a directory"), ("./missing", "is not a directory")],
)
def test_missing_model_path_is_a_config_error(model_path, problem):
    spec = ServerSpec("tiny", "tp1", model_path, engine="hf")
    with pytest.raises(ConfigError, match=problem) as caught:
        get_engine("hf").preflight(spec)
    assert str(caught.value).startswith("tiny/tp1 (engine 'hf'): ")


def test_hub_ids_and_existing_dirs_pass_the_model_path_check(tmp_path):
    check_model_path(ServerSpec("m", "c", "Qwen/Qwen3-8B"))
    check_model_path(ServerSpec("m", "c", str(tmp_path)))


def test_attach_to_a_running_hf_engine(tmp_path):
    """The real HF reference engine launched through `Server`, then attached to as a remote server would be."""
    for module in ("torch", "transformers", "fastapi", "uvicorn"):
        pytest.importorskip(module)
    from canary.tiny import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "tiny")
    spec = ServerSpec("tiny-qwen2", "page16", str(model_dir), engine="hf", args=("--page-size", "16"))
    options = LifecycleOptions(grace_period=15.0, poll_interval=0.2)
    with Server(spec, get_engine("hf"), log_dir=tmp_path / "logs", options=options) as launched:
        assert launched.info["page_size"] == 16 and launched.version.startswith("hf-reference ")
        with Server.attach(launched.base_url, options=options) as attached:
            assert attached.info["page_size"] == 16 and attached.info["model_path"] == str(model_dir)
            assert attached.version == launched.version  # the HF engine names itself in /server_info
            assert attached.model_info
        launched.check_alive()  # attaching and detaching left it running
    assert launched.clean_stop and not alive(launched.pid)


def test_secrets_stay_out_of_the_log_header_and_errors(tmp_path):
    spec = ServerSpec(
        "tiny",
        "cfg",
        "fake/model",
        engine="fake",
        args=("--mode", "crash", "--api-key", "sk-abcdefgh12345"),
        env={"HF_TOKEN": "hf_abcdefghijkl", "SGLANG_LOG_LEVEL": "debug"},
        startup_timeout=5,
    )
    with pytest.raises(ServerStartError) as caught:
        Server(spec, FakeEngine(), log_dir=tmp_path, options=FAST).start()
    header = (tmp_path / "tiny__cfg.log").read_text().split("\n", 2)[:2]
    for text in (str(caught.value), *header):
        assert "sk-abcdefgh12345" not in text and "hf_abcdefghijkl" not in text
    assert "--api-key '***'" in header[0] or "--api-key ***" in header[0]
    assert '"HF_TOKEN": "***"' in header[1] and '"SGLANG_LOG_LEVEL": "debug"' in header[1]
