"""Dropped or reordered images cost the trained canary VLM (assets/canary-vlm) MMMU accuracy, in real pytest runs of
the harness on the CPU.

The HF engine serves the committed canary VLM; the harness attaches to it through `tests/servers/fault_proxy.py` and
runs `mmmu` on two subjects of the committed MMMU-schema set (Art and Math, 60 questions, 28 of them with more than
one image), judged against `min: 0.9`. Through a clean proxy the canary answers 59 of 60 right; a proxy that drops
each chat's last image, or reverses the order of its images, takes away what the answers are read from, so accuracy
falls below the bound and the verdict fails naming it. The exact counts are pinned: fp32 on the CPU, the same
questions every run. (The random tiny VLM's machinery tests: test_mm_suites.py and test_mm_faults.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from inner_run_support import assert_clean, fault_proxy, run_inner

from harness.config.spec import ServerSpec
from harness.serve.engines import get_engine
from harness.serve.server import LifecycleOptions, Server

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
CANARY = REPO / "assets" / "canary-vlm"
THRESHOLDS = """\
models:
  canary-vlm:
    path: {model}
    engine: hf
    dtype: float32
    options:
      mmmu: {{source: {mmmu}, subjects: [Art, Math]}}
    configs:
      cpu:
        args: []
        suites: [mmmu]
references:
  mmmu:
    canary-vlm:
      - {{metric: accuracy, min: 0.9, provenance: "bound set by hand: the canary reads its answers from the images"}}
"""
# fault -> (correct of 60, the verdict line); measured on this tree, fp32 on the CPU
LINE = "mmmu[canary-vlm/cpu]: accuracy {} {} min 0.900 — thresholds.yaml references.mmmu.canary-vlm[0]"
EXPECTED = {
    "none": (59, LINE.format("0.983", "≥")),
    "drop-image": (28, LINE.format("0.467", "<")),  # a one-image question loses its only image
    "reorder-images": (49, LINE.format("0.817", "<")),  # only the 28 questions with several images can change
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    spec = ServerSpec(model="canary-vlm", config="upstream", model_path=str(CANARY / "model"), engine="hf")
    with Server(
        spec,
        get_engine(spec.engine),
        log_dir=tmp_path_factory.mktemp("upstream"),
        options=LifecycleOptions(grace_period=10),
    ) as server:
        yield server


def project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    (root / "thresholds.yaml").write_text(THRESHOLDS.format(model=CANARY / "model", mmmu=CANARY / "mmmu"))
    (root / "suites").mkdir()
    (root / "suites" / "test_mmmu.py").write_text((REPO / "suites" / "test_mmmu.py").read_text())
    return root


@pytest.mark.parametrize("fault", list(EXPECTED))
def test_dropped_or_reordered_images_cost_the_canary_accuracy(tmp_path, engine, fault):
    with fault_proxy(engine.base_url, fault) as url:
        run = run_inner(project(tmp_path), "--harness-base-url", url)
    row = run.rows()["mmmu"]
    correct, line = EXPECTED[fault]
    line_seen = next((x for x in run.output.splitlines() if x.startswith("mmmu[canary-vlm/cpu]: accuracy")), None)
    assert (row["n"], round(row["metrics"]["accuracy"] * row["n"]), line_seen) == (60, correct, line), run.output[
        -3000:
    ]
    assert row["verdict"] == ("pass" if fault == "none" else "fail")
    assert_clean(run)
