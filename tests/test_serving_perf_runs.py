"""serving_perf in real pytest runs of the harness against the timed server (tests/servers/timed_stream_server.py)
and the HF engine.

A reference for this GPU judges the run, each repeat sends its own prompts to a flushed cache, a slowed server
fails it with a verdict line naming the metric, the observed value, the reference and the ratio, a run on a GPU
without a reference is recorded, a refused threshold update keeps the measured numbers, a workload's own
`connections` overrides the suite's, and the HF engine serves the suite end to end (text, and a VLM with images).
"""

from __future__ import annotations

import json

import yaml
from inner_run_support import assert_clean, matches, run_inner
from serving_perf_support import CANARY, LAG_BUDGET_MS, REPO, THROUGHPUT, project, timed_server


def test_a_reference_for_this_gpu_judges_the_run(tmp_path):
    with timed_server("--ttft-ms", "50", "--itl-ms", "10") as url:
        run = run_inner(project(tmp_path), "--harness-base-url", url, "--harness-gpus", "")
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "pass", run.output[-3000:]
    assert set(row["metrics"]) == {"output_throughput", "ttft_ms", "itl_ms"}
    assert len(row["details"]["workloads"]["saturating"]["repeats"]) == 2
    assert "serving_perf[timed/cfg]: itl_ms" in run.output and "≤ max 15.00" in run.output, run.output[-2000:]
    assert_clean(run)


def test_each_repeat_sends_its_own_prompts_to_a_flushed_cache(tmp_path):
    """Repeats of the same prompts would be served from the radix cache (the H200 runs did that until 2026-12-02)."""
    log = tmp_path / "server.jsonl"
    with timed_server("--ttft-ms", "5", "--itl-ms", "1", "--log", str(log)) as url:
        run = run_inner(project(tmp_path), "--harness-base-url", url, "--harness-gpus", "")
    assert run.rows()["serving_perf"]["verdict"] == "pass", run.output[-3000:]
    blocks, current = [], None
    for line in map(json.loads, log.read_text().splitlines()):
        if "flush" in line:
            blocks.append(current := set())
        elif current is not None:
            current.add(line["prompt"])
    assert len(blocks) == 4  # two workloads, two repeats each, a flush before each
    for first, second in (blocks[0:2], blocks[2:4]):
        assert first and second and not first & second
    assert_clean(run)


def test_a_slowed_server_fails_naming_the_metric_value_reference_and_ratio(tmp_path):
    with timed_server("--ttft-ms", "50", "--itl-ms", "20") as url:
        run = run_inner(project(tmp_path), "--harness-base-url", url, "--harness-gpus", "")
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "fail"
    line = next(line for line in run.output.splitlines() if line.startswith("serving_perf[timed/cfg]: itl_ms"))
    assert matches(
        "serving_perf[timed/cfg]: itl_ms * > max 15.00 (1.5 × ref 10.00) — thresholds.yaml "
        "references.serving_perf.timed[2]",
        line,
    ), line
    assert 18.0 < row["metrics"]["itl_ms"] < 22.0  # twice the reference's 10 ms
    assert_clean(run)


def test_a_gpu_without_a_reference_is_recorded_and_says_so(tmp_path):
    with timed_server("--ttft-ms", "5", "--itl-ms", "1") as url:
        run = run_inner(project(tmp_path, gpu="H200"), "--harness-base-url", url, "--harness-gpus", "")
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "recorded", run.output[-3000:]
    assert (
        "serving_perf[timed/cfg]: recorded, not judged: no reference for GPU 'cpu' (references.serving_perf.timed "
        "has H200)"
    ) in run.output
    assert_clean(run)


def test_the_hf_engine_serves_the_suite_end_to_end(tmp_path, tiny_model):
    """The CPU reference engine launched by the harness: every request answered with exactly its token count."""
    root = project(tmp_path, gpu="H200")
    text = (root / "thresholds.yaml").read_text().replace(f"path: {CANARY}", f"path: {tiny_model}")
    (root / "thresholds.yaml").write_text(text.replace("num_prompts: 16,", "num_prompts: 8,"))
    run = run_inner(root)
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "recorded", run.output[-3000:]
    saturating = row["details"]["workloads"]["saturating"]["repeats"]
    assert [r["completed"] for r in saturating] == [8, 8] and all(r["failed"] == 0 for r in saturating)
    assert row["metrics"]["output_throughput"] > 0 and row["metrics"]["itl_ms"] > 0
    assert_clean(run)


def test_a_refused_threshold_update_still_keeps_the_measured_numbers(tmp_path):
    """--harness-update-thresholds on an entry without `n:` is refused by name; the row still holds every metric
    and detail measured (on 2026-12-02 a GPU run lost them this way)."""
    root = project(tmp_path)
    text = (root / "thresholds.yaml").read_text().replace(f"value: {round(THROUGHPUT, 1)}", "value: null")
    (root / "thresholds.yaml").write_text(text)
    with timed_server("--ttft-ms", "5", "--itl-ms", "1") as url:
        run = run_inner(root, "--harness-base-url", url, "--harness-gpus", "", "--harness-update-thresholds")
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "fail"
    assert (
        "serving_perf[timed/cfg]: thresholds.yaml: references.serving_perf.timed[0] has no 'n' key to update; "
        "add `n:` to the entry first"
    ) in row["failures"][0]
    assert set(row["metrics"]) == {"output_throughput", "ttft_ms", "itl_ms"}
    assert len(row["details"]["workloads"]["light"]["repeats"]) == 2
    assert_clean(run)


VLM = REPO / "assets" / "canary-vlm" / "model"
VLM_PROJECT = """\
models:
  vlm:
    path: {model}
    engine: hf
    options:
      serving_perf:
        repeats: 1
        client_lag_budget_ms: {lag_budget}
        workloads:
          images: {{dataset: images, image_size: [64, 48], images_per_request: 2, input_len: 12, output_len: 8,
                    num_prompts: 4, max_concurrency: 2, warmup: 1}}
    configs:
      cpu:
        args: []
        suites: [serving_perf]
references: {{}}
"""


def test_an_image_workload_streams_openai_chat_with_images_through_the_hf_engine(tmp_path):
    """A VLM shape: chat streams with two noise images each, token counts from usage, image tokens included: the
    canary VLM resizes every image to 96x128 pixels (transformers' smart_resize, min = max pixels 9216), 12 tokens
    where the chat template has one <|image_pad|>, so the prompts count 2 x 11 tokens per request beyond their text."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from harness.evals.perf.workload import Workload, image_requests, prompt_ids

    (tmp_path / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    (tmp_path / "thresholds.yaml").write_text(VLM_PROJECT.format(model=VLM, lag_budget=LAG_BUDGET_MS))
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "test_serving_perf.py").write_text((REPO / "suites" / "test_serving_perf.py").read_text())
    run = run_inner(tmp_path, "--harness-no-reference")
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "recorded", run.output[-3000:]
    (repeat,) = row["details"]["workloads"]["images"]["repeats"]
    assert (repeat["completed"], repeat["failed"]) == (4, 0)
    # the prompts the suite sent (seed 0, after the warm-up request), as the template lays them out
    tokenizer, ids = prompt_ids(str(VLM), str(VLM))
    project_yaml = yaml.safe_load(VLM_PROJECT.format(model=VLM, lag_budget=0))
    shape = project_yaml["models"]["vlm"]["options"]["serving_perf"]["workloads"]["images"]
    sent = image_requests(Workload.from_options("images", shape, "test"), tokenizer, ids, 0)[1:]
    text = sum(
        len(tokenizer.encode(tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)))
        for m, _ in sent
    )
    height, width = smart_resize(48, 64, factor=32, min_pixels=9216, max_pixels=9216)
    per_image = height * width // (16 * 16 * 2 * 2)
    assert (height, width, per_image) == (96, 128, 12)
    prompt_tokens = round(repeat["input_throughput"] * repeat["duration_s"])
    assert prompt_tokens == text + 4 * 2 * (per_image - 1), (prompt_tokens, text)  # usage counts every image token
    assert row["details"]["workloads"]["images"]["workload"]["image_size"] == [64, 48]
    assert_clean(run)


def test_a_workloads_own_connections_overrides_the_suites(tmp_path):
    """One server runs a shape both ways: the suite opens a connection per request, the light shape (one stream)
    keeps its one connection alive; the server logs the client port of every request."""
    log = tmp_path / "server.jsonl"
    root = project(tmp_path / "project")
    text = (root / "thresholds.yaml").read_text()
    text = text.replace("repeats: 2", "repeats: 2\n        connections: per_request")
    text = text.replace("max_concurrency: 1, warmup: 1,", "max_concurrency: 1, warmup: 1, connections: keep_alive,")
    (root / "thresholds.yaml").write_text(text)
    with timed_server("--ttft-ms", "2", "--itl-ms", "1", "--log", str(log)) as url:
        run = run_inner(root, "--harness-base-url", url, "--harness-gpus", "")
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "pass", run.output[-3000:]
    assert row["details"]["workloads"]["light"]["workload"]["connections"] == "keep_alive"
    assert "connections" not in row["details"]["workloads"]["saturating"]["workload"]  # the suite's: per_request
    blocks, current = [], None
    for line in map(json.loads, log.read_text().splitlines()):
        if "flush" in line:
            blocks.append(current := [])
        elif current is not None:
            current.append(line["peer_port"])
    # saturating, a connection per request (its second repeat's block also holds light's one warm-up request, sent
    # before light's first flush); light, one connection kept alive per repeat
    assert [len(b) for b in blocks] == [16, 17, 4, 4]
    assert [len(set(b)) for b in blocks] == [16, 17, 1, 1]
    assert_clean(run)
