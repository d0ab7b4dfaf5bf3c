"""Deployments (harness/serve/deployment/): several processes serving one config, in real pytest runs of the harness.

The lifecycle runs on CPU with HF-engine members (a `group` deployment: a sidecar, then the front the suites talk
to), as test_faults.py runs one server: members start in order, a member that fails to start is named and the
members already up are stopped, a member killed mid-run is named in the verdict and the config's next suite is
not run, Ctrl-C leaves a row for every test, and no process is left in any case. The `epd` and `pd` launch lines
are checked here as data (wiring, roles, architectures, the pd skip reason) and by SGLang's real parsers in
tests/test_preflight_real.py; they run for real on a GPU (docs/validation/).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest
from inner_run_support import assert_clean, matches, once_samples, run_inner, write_project

from harness.config.thresholds import parse_thresholds
from harness.errors import ConfigError
from harness.serve.deployment.plan import launch_lines, skip_reason

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
GROUP = """\
    configs:
      cfg:
        deployment:
          kind: group
          members:
            - {{role: sidecar, args: [--page-size, "16"]}}
            - {{role: front, args: {front_args}}}
        suites: [gsm8k, logprob_prefill_cache_hit, prefix_branching]
"""


def group_project(root, tiny_model, front_args="[]"):
    write_project(root, tiny_model)
    text = (root / "thresholds.yaml").read_text()
    start, end = text.index("    configs:\n"), text.index("references:")
    (root / "thresholds.yaml").write_text(text[:start] + GROUP.format(front_args=front_args) + text[end:])
    return root


def hf_members(proc) -> list[psutil.Process]:
    """The HF engine processes under the inner pytest, oldest first (the sidecar starts first)."""
    found = [p for p in psutil.Process(proc.pid).children(recursive=True) if "-m hf_engine" in " ".join(p.cmdline())]
    return sorted(found, key=lambda p: p.create_time())


def test_members_start_in_order_and_the_suites_talk_to_the_front(tmp_path, tiny_model):
    run = run_inner(group_project(tmp_path, tiny_model), "-k", "gsm8k")
    row = run.rows()["gsm8k"]
    assert row["verdict"] == "pass", run.output[-3000:]
    server = run.results["servers"]["tiny/cfg"]
    assert server["deployment"]["kind"] == "group"
    members = server["deployment"]["members"]
    assert [m["role"] for m in members] == ["sidecar", "front"]
    assert "--page-size 16" in members[0]["command"] and "--page-size" not in members[1]["command"]
    logs = [m["log"] for m in members]
    assert server["base_url"] == members[1]["url"] and server["log"] == logs[1]
    sidecar_log, front_log = (Path(p).read_text() for p in logs)
    assert sidecar_log.startswith("# tiny/cfg.sidecar via hf: ") and front_log.startswith("# tiny/cfg.front via hf: ")
    assert os.stat(logs[0]).st_ctime <= os.stat(logs[1]).st_ctime
    assert run.results["tests"][0]["details"]["client"]["failures"] == 0
    assert_clean(run)


def test_a_member_that_fails_to_start_is_named_and_the_others_are_stopped(tmp_path, tiny_model):
    run = run_inner(group_project(tmp_path, tiny_model, front_args='[--page-size, "0"]'), "-k", "gsm8k")
    line = next(line for line in run.output.splitlines() if line.startswith("gsm8k[tiny/cfg]: ERROR"))
    assert matches(
        "gsm8k[tiny/cfg]: ERROR: server did not start: tiny/cfg: group member 'front' (2 of 2) did not start", line
    ), line
    assert run.rows()["gsm8k"]["verdict"] == "error"
    assert_clean(run)  # the sidecar, which had started, is gone too


def test_a_member_dying_mid_run_is_named_in_the_verdict(tmp_path, tiny_model):
    kill_sidecar = once_samples(6, lambda proc: os.kill(hf_members(proc)[0].pid, signal.SIGKILL))
    run = run_inner(group_project(tmp_path, tiny_model), "-k", "gsm8k or branching", act=kill_sidecar)
    rows = run.rows()
    assert rows["gsm8k"]["verdict"] == "error" and rows["prefix_branching"]["verdict"] == "error"
    lines = {line.split("]")[0]: line for line in run.output.splitlines() if "]: ERROR" in line}
    assert matches(
        "gsm8k[tiny/cfg]: ERROR: member 'sidecar' of the group deployment exited with code -9 after * of 40 samples",
        lines["gsm8k[tiny/cfg"],
    ), lines
    assert matches(
        "prefix_branching[tiny/cfg]: ERROR: not run: the member 'sidecar' of the group deployment exited with "
        "code -9 during gsm8k after * of 40 samples (log: *tiny__cfg.sidecar.log)",
        lines["prefix_branching[tiny/cfg"],
    ), lines
    assert_clean(run)


def test_ctrl_c_leaves_a_row_for_every_test_and_no_member(tmp_path, tiny_model):
    run = run_inner(
        group_project(tmp_path, tiny_model),
        "-k",
        "gsm8k or branching",
        act=once_samples(4, lambda proc: os.kill(proc.pid, signal.SIGINT)),
    )
    assert {row["suite"]: row["verdict"] for row in run.results["tests"]} == {
        "gsm8k": "error",
        "prefix_branching": "error",
    }
    assert "gsm8k[tiny/cfg]: ERROR: interrupted by Ctrl-C (KeyboardInterrupt)" in run.output
    assert_clean(run)


# -- declarations and launch lines ---------------------------------------------------------------------------------

EPD = """\
models:
  vlm:
    path: {path}
    configs:
      epd:
        args: [--mem-fraction-static, "0.3"]
        gpus: 1
        deployment:
          kind: {kind}
          members:
            - {{role: {encoder}, args: [--encoder-only, --encoder-transfer-backend, zmq_to_scheduler,
                                       --mem-fraction-static, "0.15"], gpus: [0]}}
            - {{role: language, args: [--language-only, --encoder-transfer-backend, zmq_to_scheduler], gpus: [0]}}
        suites: [mmmu]
references:
  mmmu:
    vlm: [{{metric: accuracy, min: 0.0, provenance: test}}]
"""
CANARY_VLM = REPO / "assets" / "canary-vlm" / "model"


def epd(path=CANARY_VLM, kind="epd", encoder="encoder"):
    doc = parse_thresholds(EPD.format(path=path, kind=kind, encoder=encoder), REPO / "t.yaml", "t.yaml")
    return doc.server_spec("vlm", "epd")


def test_epd_wires_the_encoder_urls_into_the_language_server():
    encoder, language = launch_lines(epd())
    assert (encoder.config, language.config) == ("epd.encoder", "epd.language")
    assert encoder.args == (
        "--mem-fraction-static",
        "0.3",
        "--encoder-only",
        "--encoder-transfer-backend",
        "zmq_to_scheduler",
        "--mem-fraction-static",
        "0.15",
    )
    assert language.args[-2:] == ("--encoder-urls", "http://127.0.0.1:1")  # the preflight's placeholder
    assert epd().deployment.gpus == 1 and encoder.gpus == language.gpus == 1


@pytest.mark.parametrize(
    "kind, encoder, message",
    [
        (
            "epdd",
            "encoder",
            "t.yaml: models.vlm.configs.epd.deployment.kind: unknown deployment kind 'epdd' (did you mean 'epd'?)",
        ),
        (
            "epd",
            "encodr",
            "t.yaml: models.vlm.configs.epd.deployment.members[0].role: unknown epd member role 'encodr' "
            "(did you mean 'encoder'?)",
        ),
    ],
)
def test_a_misspelt_kind_or_role_names_the_key_and_the_choices(kind, encoder, message):
    with pytest.raises(ConfigError) as caught:
        epd(kind=kind, encoder=encoder)
    assert message in str(caught.value)


def test_epd_of_an_architecture_sglang_cannot_split_is_refused_before_launch():
    from harness.serve.deployment.plan import preflight
    from harness.serve.engines import get_engine

    text_model = REPO / "assets" / "canary" / "model"
    with pytest.raises(ConfigError) as caught:
        preflight(epd(path=text_model), get_engine)
    arch = json.loads((text_model / "config.json").read_text())["architectures"]
    assert "vlm/epd: SGLang serves the vision encoder split (epd) only for Qwen2VLForConditionalGeneration" in str(
        caught.value
    )
    assert f"names {arch}" in str(caught.value)


def test_pd_is_skipped_with_the_missing_transfer_backend_named():
    spec = parse_thresholds(REPO.joinpath("thresholds.yaml").read_text(), REPO / "thresholds.yaml", "thresholds.yaml")
    pd = [s for s in spec.server_specs() if s.deployment is not None and s.deployment.kind == "pd"]
    assert pd, "thresholds.yaml declares no pd config"
    prefill, decode, router = launch_lines(pd[0])
    assert prefill.args[-4:-2] == ("--disaggregation-mode", "prefill") and decode.args[-2:] == (
        "--disaggregation-mode",
        "decode",
    )
    assert router.engine == "sglang-router" and router.args[:2] == ("--pd-disaggregation", "--mini-lb")
    reason = skip_reason(pd[0])
    assert reason == (
        f"{pd[0].id}: pd needs the KV transfer backend 'mooncake_tcp' (Python module 'mooncake', pip "
        "package mooncake-transfer-engine), which is not installed here"
    )
