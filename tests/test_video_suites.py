"""Video-MME through the HF engine in real pytest runs of the harness (as test_faults.py and test_mm_faults.py).

The engine serves the committed canary VLM; the harness attaches to it through `tests/servers/fault_proxy.py`, and
`video_mme_parity` compares it with a second HF engine the harness starts on the same weights, question by
question. A clean path agrees on every answer; an engine that reverses a video's frames, loses its later frames or
sends one frame for all of them changes what the model sees, so answers part and the verdict fails. (Parity
compares answers, not accuracy, so it catches what moves any answer.) The report records how frames were chosen, so a
changed sampling rule shows in results.json; a missing video is an error row naming the file while the other
suites of the run still run; `video_url`, which the HF engine decodes itself, is answered and compared with frames.
"""

from __future__ import annotations

import shutil

import pytest
from inner_run_support import assert_clean, fault_proxy, matches, run_inner

from harness.config.spec import ServerSpec
from harness.serve.engines import get_engine
from harness.serve.server import LifecycleOptions, Server

pytest.importorskip("cv2")
pytest.importorskip("torch")

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
CANARY = REPO / "assets" / "canary-vlm"
THRESHOLDS = """\
models:
  vlm:
    path: {model}
    engine: hf
    dtype: float32
    options:
{options}
    configs:
      cfg:
        args: []
        suites: [{suites}]
references:
{references}"""


REFERENCES = {
    "video_mme": "  video_mme:\n    vlm:\n      - {metric: accuracy, min: 0.0, provenance: recorded}\n",
    "video_mme_parity": (
        "  video_mme_parity:\n    vlm:\n      - {metric: answer_agreement, min: 1.0, provenance: fp32 twice}\n"
    ),
    "video_mme_modes": (
        "  video_mme_modes:\n    vlm:\n      - {metric: answer_agreement, min: 1.0, provenance: same answers}\n"
    ),
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    spec = ServerSpec(model="vlm", config="upstream", model_path=str(CANARY / "model"), engine="hf")
    with Server(
        spec,
        get_engine(spec.engine),
        log_dir=tmp_path_factory.mktemp("upstream"),
        options=LifecycleOptions(grace_period=10),
    ) as server:
        yield server


def project(root, suites="video_mme", sampling="uniform", videos=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    videos = videos or CANARY / "videomme"
    options = {
        "video_mme": f"{{source: {videos}, num_frames: 8, sampling: {sampling}}}",
        "video_mme_parity": f"{{source: {videos}, num_frames: 8}}",
        "video_mme_modes": f"{{source: {videos}, num_frames: 8, limit: 6}}",
    }
    chosen = suites.split(", ")
    text = THRESHOLDS.format(
        model=CANARY / "model",
        suites=suites,
        options="\n".join(f"      {s}: {options[s]}" for s in chosen),
        references="".join(REFERENCES[s] for s in chosen),
    )
    (root / "thresholds.yaml").write_text(text)
    (root / "suites").mkdir()
    for suite in suites.split(", "):
        (root / "suites" / f"test_{suite}.py").write_text((REPO / "suites" / f"test_{suite}.py").read_text())
    return root


def test_a_clean_path_agrees_with_the_reference_and_records_how_frames_were_chosen(tmp_path, engine):
    with fault_proxy(engine.base_url, "none") as url:
        run = run_inner(project(tmp_path, suites="video_mme, video_mme_parity"), "--harness-base-url", url)
    rows = run.rows()
    assert rows["video_mme_parity"]["verdict"] == "pass", run.output[-3000:]
    assert "video_mme_parity[vlm/cfg]: 0 of 90 answers differ" in run.output
    details = rows["video_mme"]["details"]
    assert details["mode"] == "frames" and details["sampling"] == {
        "rule": "uniform",
        "num_frames": 8,
        "fps": 1.0,
        "max_pixels": None,
    }
    assert details["request_timeout_s"] > 0 and set(details["duration"]) == {"short", "medium", "long"}
    assert rows["video_mme"]["metrics"]["accuracy"] == rows["video_mme_parity"]["metrics"]["reference_accuracy"]
    assert_clean(run)


def frames_sent(root) -> dict[str, list[int]]:
    import json

    files = list((root / "reports").glob("*/samples/video_mme__*.jsonl"))
    return {s["question_id"]: s["frame_indices"] for f in files for s in map(json.loads, f.read_text().splitlines())}


def test_a_changed_sampling_rule_shows_in_the_report(tmp_path, engine):
    runs = {}
    for rule in ("uniform", "fps"):
        with fault_proxy(engine.base_url, "none") as url:
            runs[rule] = run_inner(project(tmp_path / rule, sampling=rule), "--harness-base-url", url)
        assert_clean(runs[rule])
    assert [runs[r].rows()["video_mme"]["details"]["sampling"]["rule"] for r in runs] == ["uniform", "fps"]
    uniform, fps = frames_sent(tmp_path / "uniform"), frames_sent(tmp_path / "fps")
    assert uniform.keys() == fps.keys() and len(uniform) == 90
    # 8 frames at 4 fps: 1 fps keeps 0 and 4 of a short video; uniform keeps all 8
    assert uniform["001-1"] == list(range(8)) and fps["001-1"] == [0, 4]


@pytest.mark.parametrize("fault", ["reorder-images", "drop-late-images", "repeat-first-image"])
def test_an_engine_that_mishandles_frames_fails_parity(tmp_path, engine, fault):
    with fault_proxy(engine.base_url, fault) as url:
        run = run_inner(project(tmp_path, suites="video_mme_parity"), "--harness-base-url", url)
    row = run.rows()["video_mme_parity"]
    assert row["verdict"] == "fail", run.output[-3000:]
    agreement = row["metrics"]["answer_agreement"]
    differ = round((1 - agreement) * 90)
    assert differ >= 1
    assert f"video_mme_parity[vlm/cfg]: answer_agreement {agreement:.3f} < min 1.000" in run.output
    assert f"video_mme_parity[vlm/cfg]: {differ} of 90 answers differ; the first" in run.output
    assert_clean(run)


def test_a_missing_video_is_an_error_row_naming_the_file(tmp_path, engine):
    videos = shutil.copytree(CANARY / "videomme", tmp_path / "videos")
    (videos / "data" / "short-003.mp4").unlink()
    with fault_proxy(engine.base_url, "none") as url:
        run = run_inner(project(tmp_path / "p", videos=videos), "--harness-base-url", url)
    row = run.rows()["video_mme"]
    assert row["verdict"] == "error"
    assert (
        f"video_mme: 1 video file(s) missing: {videos}/data/short-003.mp4 (video_mme.video_dir: {videos}/data)"
        in run.output
    )
    assert_clean(run)


@pytest.mark.parametrize("fault", ["none", "reorder-images"])
def test_video_url_through_the_hf_engine_is_answered_and_compared_with_frames(tmp_path, engine, fault):
    """Both delivery modes on one server: the engine decodes the `video_url` itself (OpenCV, the model's own
    sampling rule), every question gets an answer, and the two modes' answers are compared question by question.
    The canary answers all 6 the same both ways (2026-12-08), so the bound is 1.0; a proxy that reverses the frames
    sent as images (the `video_url` part passes untouched) makes the modes part and the verdict fail."""
    with fault_proxy(engine.base_url, fault) as url:
        run = run_inner(project(tmp_path, suites="video_mme_modes"), "--harness-base-url", url)
    row = run.rows()["video_mme_modes"]
    line = next(x for x in run.output.splitlines() if x.startswith("video_mme_modes[vlm/cfg]: answer_agreement"))
    if fault != "none":
        assert row["verdict"] == "fail" and row["metrics"]["answer_agreement"] < 1.0, run.output[-3000:]
        assert matches("video_mme_modes[vlm/cfg]: answer_agreement * < min 1.000 — *", line), line
        assert_clean(run)
        return
    assert row["verdict"] == "pass", run.output[-3000:]
    assert row["n"] == 6 and row["metrics"]["answer_agreement"] == 1.0
    assert line == (
        "video_mme_modes[vlm/cfg]: answer_agreement 1.000 ≥ min 1.000 — thresholds.yaml "
        "references.video_mme_modes.vlm[0]"
    )
    assert "video_mme_modes[vlm/cfg]: 0 of 6 answers differ" in run.output
    details = row["details"]
    assert details["client"] == {"requests": 12, "retries": 0, "failures": 0}
    assert details["video_url"]["sampling"] == "by the server (its video processor's defaults)"
    assert details["frames"]["sampling"]["rule"] == "uniform"
    assert_clean(run)
