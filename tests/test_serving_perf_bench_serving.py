"""serving_perf's bench_serving side by side: the command it is run with, the driver that runs it (one process per
suite, a stuck run killed), the requests it is handed or draws itself (a fake `sglang` package records them),
bench_serving beside each repeat of a real run, and how the two tools' numbers are judged and paired.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inner_run_support import assert_clean, matches, run_inner
from serving_perf_support import CANARY, REPO, project, timed_server


def test_bench_serving_reads_a_sharegpt_workloads_file_and_flushes_as_the_harness_does(tmp_path):
    from harness.evals.perf.bench_serving import command
    from harness.evals.perf.workload import Workload

    text = Workload.from_options(
        "t",
        {
            "dataset": "sharegpt",
            "dataset_path": "x.json",
            "input_len": 64,
            "output_len": 32,
            "num_prompts": 8,
            "max_concurrency": 1,
        },
        "w",
    )
    cmd = command(
        "http://127.0.0.1:1", "tok", text, 3, tmp_path / "o.jsonl", "python", dataset_path=tmp_path / "x.json"
    )
    joined = " ".join(cmd)
    assert (
        f"--dataset-name sharegpt --dataset-path {tmp_path / 'x.json'} "
        "--sharegpt-context-len 96 --sharegpt-output-len 32" in joined
    )
    assert "--tokenize-prompt" not in cmd and cmd[-3:] == ["--max-concurrency", "1", "--flush-cache"]
    ids = Workload.from_options("r", {"input_len": 64, "output_len": 32, "num_prompts": 8}, "w")
    assert "--dataset-name random-ids --tokenize-prompt" in " ".join(
        command("u", "tok", ids, 3, tmp_path / "o", flush_cache=False)
    )
    assert "--flush-cache" not in command("u", "tok", ids, 3, tmp_path / "o", flush_cache=False)


def test_bench_serving_side_by_side_judges_paired_medians_where_both_tools_repeat_within_tolerance():
    from harness.evals.perf.side_by_side import side_by_side

    ours = [{"output_throughput": v, "median_ttft_ms": 20.0, "median_itl_ms": 10.0} for v in (990.0, 1010.0, 1000.0)]
    theirs = [
        {"output_throughput": v, "median_ttft_ms": 25.0, "median_itl_ms": i}
        for v, i in ((1000.0, 10.1), (1040.0, 10.0), (960.0, 10.2))
    ]
    block = side_by_side("light", ours, theirs + [{"command": [], "error": "exit 1: boom"}])
    tput, ttft, itl = (block["metrics"][k] for k in ("output_throughput", "median_ttft_ms", "median_itl_ms"))
    # throughput: medians equal, paired within 5 %, but bench_serving itself moved 4.0 % then 7.7 % (median 5.8 %)
    assert (tput["harness"], tput["bench_serving"], tput["within_tolerance"], tput["judged"]) == (
        1000.0,
        1000.0,
        True,
        False,
    )
    assert tput["bench_serving_run_to_run"] == pytest.approx((0.04 + 80 / 1040) / 2)
    assert tput["bench_serving_spread"] == [960.0, 1040.0]
    assert tput["paired_relative_differences"] == pytest.approx([-0.01, -30 / 1040, 40 / 960])
    assert ttft["relative_difference"] == pytest.approx(-0.2) and ttft["judged"] and not ttft["within_tolerance"]
    assert itl["judged"] and itl["within_tolerance"]
    assert block["line"] == (
        "bench_serving light (3 of 4 runs): 1 of 2 judged metrics within 5%, outside: median_ttft_ms; "
        "not judged, bench_serving moved more than 5% run to run: output_throughput; harness vs "
        "bench_serving (medians; paired; run to run, harness and bench_serving): output_throughput "
        "+0.0% (paired -1.0%; 1.5%, 5.8%), median_ttft_ms -20.0% (paired -20.0%; 0.0%, 0.0%), "
        "median_itl_ms -1.0% (paired -1.0%; 0.0%, 1.5%)"
    )
    # the harness's own runs moving past 5 % leave a metric unjudged too, however still bench_serving held
    walked = [{**s, "median_itl_ms": v} for s, v in zip(ours, (10.0, 13.0, 10.5))]
    walked_block = side_by_side("light", walked, theirs)
    itl_walked = walked_block["metrics"]["median_itl_ms"]
    assert (
        itl_walked["bench_serving_run_to_run"] <= 0.05 < itl_walked["harness_run_to_run"] and not itl_walked["judged"]
    )
    assert "; not judged, the harness alone moved more than 5%: median_itl_ms; harness vs" in walked_block["line"]
    once = side_by_side("light", ours[:1], theirs[:1])  # one run: no run-to-run change to judge against
    assert not any(m["judged"] for m in once["metrics"].values())
    assert once["line"].startswith(
        "bench_serving light (1 of 1 runs): 0 of 0 judged metrics within 5%; not judged, "
        "a tool ran once: output_throughput, median_ttft_ms, median_itl_ms;"
    )
    failed = side_by_side("light", ours, [{"command": [], "error": "exit 1: boom"}])
    assert failed["line"] == "bench_serving light: failed in every repeat (exit 1: boom)" and not failed["metrics"]


def test_a_runs_samples_file_is_rejudged_by_the_same_rule(tmp_path):
    import json

    from harness.evals.perf.side_by_side import rejudge, side_by_side

    ours = [{"workload": "light", "repeat": k, "median_itl_ms": v} for k, v in ((1, 10.0), (2, 10.4))]
    theirs = [
        {"workload": "light", "repeat": k, "tool": "bench_serving", "median_itl_ms": v}
        for k, v in ((1, 10.2), (2, 10.1))
    ]
    rows = [ours[0], theirs[0], theirs[1], ours[1], {"workload": "saturating", "repeat": 1, "median_itl_ms": 9.0}]
    samples = tmp_path / "serving_perf__m__c.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert rejudge(samples) == [side_by_side("light", ours, theirs)["line"], "saturating: no bench_serving run"]


FAKE_BENCH_SERVING = """\
import json, os, sys, time
args = sys.argv[1:]
out = args[args.index("--output-file") + 1]
if "--sleep" in args:
    time.sleep(float(args[args.index("--sleep") + 1]))
if "--die" in args:
    os._exit(3)
print("fake bench_serving", os.getpid())
with open(out, "a") as f:
    f.write(json.dumps({"output_throughput": float(args[args.index("--seed") + 1]), "pid": os.getpid()}) + "\\n")
"""


def test_bench_serving_runs_in_one_process_per_suite_and_a_stuck_run_is_killed(tmp_path):
    """The driver runs the real module path (`sglang.bench_serving` as __main__) several times in one process; a run
    past its timeout kills the process group, a dead driver is an error with its exit, and the next run starts anew."""
    import os

    import psutil

    from harness.evals.perf.bench_serving import Driver

    package = tmp_path / "site" / "sglang"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "bench_serving.py").write_text(FAKE_BENCH_SERVING)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    driver = Driver(env=env)
    try:

        def run(*extra, seed=1, timeout=30.0):
            return driver.run(["--seed", str(seed), "--output-file", str(tmp_path / "o.jsonl"), *extra], timeout)

        first, second = run(seed=1), run(seed=2)
        assert (first["returncode"], second["returncode"]) == (0, 0) and "fake bench_serving" in second["tail"]
        pids = {json.loads(line)["pid"] for line in (tmp_path / "o.jsonl").read_text().splitlines()}
        assert len(pids) == 1  # one process for both runs
        stuck_pid = driver.proc.pid
        stuck = run("--sleep", "60", timeout=1.0)
        assert stuck["returncode"] == -9 and stuck["tail"].endswith("(timed out after 1 s)")
        assert driver.proc is None and not psutil.pid_exists(stuck_pid)
        died = run("--die")
        assert died["returncode"] == 3 and driver.proc is None
        again = run(seed=5)
        assert again["returncode"] == 0
        assert len({json.loads(line)["pid"] for line in (tmp_path / "o.jsonl").read_text().splitlines()}) == 2
    finally:
        driver.close()
    assert driver.proc is None


FAKE_SERVING = """
import json, os, sys, time, urllib.request
from sglang.benchmark.datasets import DatasetRow

def get_dataset(args, tokenizer, model_id=None):
    return [DatasetRow(prompt=[7, 7], prompt_len=2, output_len=3)]  # its own draw

def post(url, body):  # seconds to the first streamed `data:` line: bench_serving's TTFT, give or take the parse
    start, request = time.perf_counter(), urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        first = next((time.perf_counter() for line in response if line.startswith(b"data:")), None)
        response.read()
    return first - start if first else 0.0

def cli_main():
    argv = sys.argv[1:]
    rows = get_dataset(None, None)
    if "--fail" in argv:
        raise RuntimeError("bench_serving failed mid-run")
    ttfts = [0.001 * (k + 1) for k in range(len(rows))]
    if os.environ.get("FAKE_BENCH_SENDS"):  # as bench_serving: flush, then one streamed request per row
        base = argv[argv.index("--base-url") + 1]
        if "--flush-cache" in argv:
            post(base + "/flush_cache", {})
        ttfts = [post(base + "/generate", {"input_ids": r.prompt, "stream": True,
                                           "sampling_params": {"max_new_tokens": r.output_len, "ignore_eos": True}})
                 for r in rows]
    details = {"ttfts": ttfts} if "--output-details" in argv else {}
    with open(argv[argv.index("--output-file") + 1], "a") as f:
        rows = [[r.prompt, r.prompt_len, r.output_len] for r in rows]
        f.write(json.dumps({"output_throughput": 1.0, "rows": rows, **details}) + "\\n")
"""
FAKE_DATASETS = """
from dataclasses import dataclass
from typing import Any

@dataclass
class DatasetRow:
    prompt: Any
    prompt_len: int
    output_len: int
"""


def fake_sglang(site: Path) -> Path:
    """A `sglang` whose bench_serving, as 0.5.17's and 0.5.23's, runs sglang.benchmark.serving's cli_main, which
    looks get_dataset up in its module when it runs; it records the rows it would send instead of sending them."""
    (site / "sglang" / "benchmark" / "datasets").mkdir(parents=True)
    for folder in ("sglang", "sglang/benchmark"):
        (site / folder / "__init__.py").write_text("")
    (site / "sglang" / "benchmark" / "datasets" / "__init__.py").write_text(FAKE_DATASETS)
    (site / "sglang" / "benchmark" / "serving.py").write_text(FAKE_SERVING)
    (site / "sglang" / "bench_serving.py").write_text("from sglang.benchmark.serving import cli_main\ncli_main()\n")
    return site


def test_bench_serving_sends_the_requests_it_is_handed_and_draws_its_own_otherwise(tmp_path):
    import os

    from harness.evals.perf.bench_serving import Driver, run_once
    from harness.evals.perf.workload import Workload

    env = {**os.environ, "PYTHONPATH": str(fake_sglang(tmp_path / "site"))}
    workload = Workload.from_options("light", {"input_len": 2, "output_len": 3, "num_prompts": 2}, "w")
    ours = [
        {"prompt": [1, 2], "prompt_len": 2, "output_len": 3},
        {"prompt": "a text", "prompt_len": 2, "output_len": 5},
    ]
    driver = Driver(env=env)
    try:
        same = run_once("http://127.0.0.1:1", "tok", workload, 0, tmp_path / "a.jsonl", driver=driver, requests=ours)
        own = run_once("http://127.0.0.1:1", "tok", workload, 0, tmp_path / "b.jsonl", driver=driver)
        failed = driver.run(
            ["--fail", "--output-file", str(tmp_path / "x.jsonl")], 30, requests=tmp_path / "a.requests.jsonl"
        )
        again = run_once("http://127.0.0.1:1", "tok", workload, 0, tmp_path / "d.jsonl", driver=driver)
    finally:
        driver.close()
    assert failed["returncode"] == 1 and "bench_serving failed mid-run" in failed["tail"]
    assert json.loads((tmp_path / "d.jsonl").read_text())["rows"] == [[[7, 7], 2, 3]]  # its own again after a failure
    assert again["prompts"] == "own"
    alone = run_once("http://127.0.0.1:1", "tok", workload, 0, tmp_path / "c.jsonl", env=env, requests=ours[:1])
    assert (same["prompts"], own["prompts"], alone["prompts"]) == ("same", "own", "same"), (same, own, alone)
    assert same["by_request"] == {"ttft_ms": [1.0, 2.0]}  # --output-details' ttfts, in ms, in the order sent
    rows = [json.loads((tmp_path / f"{k}.jsonl").read_text())["rows"] for k in "abc"]
    assert rows == [[[[1, 2], 2, 3], ["a text", 2, 5]], [[[7, 7], 2, 3]], [[[1, 2], 2, 3]]]


def test_beside_each_repeat_bench_serving_times_the_harness_s_own_requests(tmp_path):
    """The suite hands bench_serving the requests of the repeat beside it: the timed server logs every request's
    prompt (a hash of its ids) and output length after each flush, the fake bench_serving sends what it was handed."""
    import os

    log = tmp_path / "server.jsonl"
    root = project(tmp_path / "project")
    text = (root / "thresholds.yaml").read_text().replace("repeats: 2", "repeats: 2\n        bench_serving: true")
    (root / "thresholds.yaml").write_text(
        text.replace(
            "          saturating: {input_len: 16, output_len: 32, num_prompts: 16, warmup: 1, "
            "gate: [output_throughput]}\n",
            "",
        )
    )
    site = fake_sglang(tmp_path / "site")
    with timed_server("--ttft-ms", "2", "--itl-ms", "1", "--log", str(log)) as url:
        run = run_inner(
            root,
            "--harness-base-url",
            url,
            "--harness-gpus",
            "",
            "--harness-no-reference",
            env={"PYTHONPATH": f"{site}{os.pathsep}{REPO}", "FAKE_BENCH_SENDS": "1"},
        )
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "recorded", run.output[-3000:]  # --harness-no-reference
    assert [r["prompts"] for r in row["details"]["workloads"]["light"]["bench_serving"]["bench_serving_runs"]] == [
        "same"
    ] * 2
    blocks, current = [], None
    for line in map(json.loads, log.read_text().splitlines()):
        if "flush" in line:
            blocks.append(current := [])
        elif current is not None:
            current.append((line["prompt"], line["sends"][-1][1], line["peer_port"]))
    # repeat 1: the harness, then bench_serving; repeat 2: bench_serving first; each run after its own flush. The
    # harness keeps one connection alive, the fake bench_serving opens one per request: that tells the tools apart.
    assert [len({port for *_, port in b}) for b in blocks] == [1, 4, 4, 1], blocks
    sent = [[request[:2] for request in b] for b in blocks]
    assert sent[0] == sent[1] and sent[2] == sent[3] and not set(sent[0]) & set(sent[2])
    # both tools' TTFTs of each request are kept in the samples (not in the report) and pair up request by request
    from harness.evals.perf.side_by_side import rejudge

    assert "by_request" not in json.dumps(row["details"])
    samples = next(root.rglob("serving_perf__*.jsonl"))
    lines = rejudge(samples)
    assert matches(
        "light TTFT by request, harness - bench_serving: median * ms (quartiles *, *), harness higher in "
        "* of 8; harness's gap from an answer to its next send: median * ms",
        lines[1],
    ), lines
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert all(min(r["by_request"]["ttft_ms"]) >= 2.0 for r in rows)  # the server's 2 ms, measured by either tool
    assert_clean(run)


def test_a_text_prompt_is_handed_over_with_its_token_count_as_bench_serving_counts_it():
    from transformers import AutoTokenizer

    from harness.evals.perf.bench_serving import dataset_row

    tokenizer = AutoTokenizer.from_pretrained(CANARY)
    text = "Natalia sold clips to 48 of her friends in April."
    assert dataset_row(text, 32, tokenizer) == {
        "prompt": text,
        "prompt_len": len(tokenizer.encode(text)),
        "output_len": 32,
    }
    assert dataset_row([5, 6, 7], 8, tokenizer) == {"prompt": [5, 6, 7], "prompt_len": 3, "output_len": 8}


def test_ttft_by_request_pairs_request_k_of_both_tools_and_reads_the_harness_s_refill_gap():
    from harness.evals.perf.side_by_side import ttft_by_request

    ours = [{"by_request": {"start_ms": [0, 101, 202.5], "ttft_ms": [50, 52, 51], "e2e_ms": [100, 100, 100]}}] * 2
    theirs = [
        {"prompts": "same", "by_request": {"ttft_ms": [48, 49, 52]}},
        {"prompts": "own", "by_request": {"ttft_ms": [1, 1, 1]}},
    ]
    assert ttft_by_request("light", ours, theirs) == (
        "light TTFT by request, harness - bench_serving: median +2.00 ms "
        "(quartiles +0.50, +2.50), harness higher in 2 of 3; harness's gap "
        "from an answer to its next send: median 1.25 ms"
    )
    failed = [
        {
            "by_request": {
                "start_ms": [0, 101, 202.5, 304],
                "ttft_ms": [50, None, 51, 50],
                "e2e_ms": [100, None, 100, 100],
            }
        }
    ]
    four = [{"prompts": "same", "by_request": {"ttft_ms": [49, 49, 49, 49]}}]
    # gaps 1 (after request 0) and 1.5 (after request 2): none from the failed request's missing end
    assert ttft_by_request("f", failed, four).endswith(
        "higher in 3 of 3; harness's gap from an answer to its next send: median 1.25 ms"
    )
    overlapping = [{"by_request": {"start_ms": [0, 0], "ttft_ms": [5, 5], "e2e_ms": [9, 9]}}]
    assert ttft_by_request("s", overlapping, [{"prompts": "same", "by_request": {"ttft_ms": [4, 6]}}]).endswith(
        "higher in 1 of 2"
    )
    assert ttft_by_request("s", ours, [{"prompts": "same"}]) is None  # a run from before --output-details
