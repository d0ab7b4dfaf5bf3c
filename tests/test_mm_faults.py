"""Engines that mishandle images fail the multimodal suites, in real pytest runs of the harness (as test_faults.py).

The HF engine serves a tiny random Qwen3-VL; the harness attaches to it through `tests/servers/fault_proxy.py`
and `mmmu_parity` compares it with a second HF engine the harness starts itself on the same weights. A proxy
that drops an image or reverses the images of a chat changes what the model sees, so the answers under test
part from the reference's: the verdict fails and prints the first disagreeing questions. A clean proxy passes.
(A cache keyed by text alone: tests/test_mm_suites.py; accuracy lost on the trained canary VLM:
tests/test_mm_canary.py.)
"""

from __future__ import annotations

import pytest
from hf_vlm_support import build_tiny_qwen3_vl
from inner_run_support import assert_clean, fault_proxy, run_inner
from test_mm_suites import write_mmmu

from harness.config.spec import ServerSpec
from harness.serve.engines import get_engine
from harness.serve.server import LifecycleOptions, Server

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
THRESHOLDS = """\
models:
  tiny-vl:
    path: {model}
    engine: hf
    dtype: float32
    options:
      mmmu_parity: {{source: mmmu, subjects: [Art, Math]}}
    configs:
      cfg:
        args: []
        suites: [mmmu_parity]
references:
  mmmu_parity:
    tiny-vl:
      - {{metric: answer_agreement, min: 1.0, provenance: two fp32 engines on the same weights}}
"""


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny_vl"))


@pytest.fixture(scope="module")
def engine(vlm, tmp_path_factory):
    spec = ServerSpec(model="tiny-vl", config="upstream", model_path=str(vlm), engine="hf")
    with Server(
        spec,
        get_engine(spec.engine),
        log_dir=tmp_path_factory.mktemp("upstream"),
        options=LifecycleOptions(grace_period=10),
    ) as server:
        yield server


@pytest.fixture
def project(tmp_path, vlm):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    (tmp_path / "thresholds.yaml").write_text(THRESHOLDS.format(model=vlm))
    write_mmmu(tmp_path / "mmmu")
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "test_mmmu_parity.py").write_text((REPO / "suites" / "test_mmmu_parity.py").read_text())
    return tmp_path


def test_a_clean_path_agrees_with_the_reference(project, engine):
    with fault_proxy(engine.base_url, "none") as url:
        run = run_inner(project, "--harness-base-url", url)
    row = run.rows()["mmmu_parity"]
    assert row["verdict"] == "pass" and row["metrics"]["answer_agreement"] == 1.0, run.output[-3000:]
    assert "mmmu_parity[tiny-vl/cfg]: 0 of 12 answers differ" in run.output
    assert_clean(run)


@pytest.mark.parametrize("fault, changed", [("drop-image", 12), ("reorder-images", 4)])
def test_an_engine_that_drops_or_reorders_images_fails_parity(project, engine, fault, changed):
    with fault_proxy(engine.base_url, fault) as url:
        run = run_inner(project, "--harness-base-url", url)
    row = run.rows()["mmmu_parity"]
    assert row["verdict"] == "fail", run.output[-3000:]
    differ = round((1 - row["metrics"]["answer_agreement"]) * 12)
    assert 1 <= differ <= changed  # only questions whose images the fault touched can change
    assert (
        f"mmmu_parity[tiny-vl/cfg]: answer_agreement {row['metrics']['answer_agreement']:.3f} < min 1.000" in run.output
    )
    assert f"mmmu_parity[tiny-vl/cfg]: {differ} of 12 answers differ; the first" in run.output
    assert_clean(run)
