"""serving_perf against servers whose timing is known (tests/servers/timed_stream_server.py), and end to end.

The timed server answers every request with its first token after TTFT and one token per ITL on an absolute
schedule, and logs when it really wrote each chunk (on the monotonic clock the client stamps with too), so the
truth is known per request: TTFT from the client's send to the server's first write, ITL per token from the
server's writes, TPOT from its first to its last. Each metric the client measured must be within 2 % of that
truth (+0.5 ms for the loopback): what is left is the client's own error, whatever else loads the machine. The
shape must hold as well (TTFT about 50 ms, mean ITL 10 ms). Before the server logged its writes, the schedule
served as the truth, and the server's own event loop (16 writes falling due at once, taken in turn) showed as
3.5-7 ms of "client error" in TTFT and a median ITL 3-5 % high, depending on the machine's load. Multi-token chunks pool ITL per token, an empty first chunk is not the first token, a
textless last chunk changes nothing, a stalled stream and a wrong token count are errors before any timing. In
real pytest runs of the harness: a reference for this GPU judges the run, a slowed server fails it with a
verdict line naming the metric, the observed value, the reference and the ratio, a run on a GPU without a
reference is recorded, and the HF engine serves the suite end to end.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_faults import assert_clean, matches, run_inner, serve_script

from harness.evals.perf.measure import RequestTiming, run_requests, summarize
from harness.evals.perf.workload import payload
from harness.evals.serving_perf import PerfRunInvalid, verify

REPO = Path(__file__).resolve().parents[1]
SERVER = Path(__file__).parent / "servers" / "timed_stream_server.py"
CANARY = REPO / "assets" / "canary" / "model"
REL = 0.02


def timed_server(*flags: str):
    return serve_script(SERVER, *flags)


def measure(url: str, n: int = 16, tokens: int = 64, concurrency: int | None = None, timeout_s: float = 30.0):
    """n streams at once (request i's prompt is eight times id i), measured after a pass that opens the keep-alive
    connections; the timings, their summary and the client's load."""
    import aiohttp

    async def go():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for _ in range(2):
                timings = [RequestTiming(8, tokens) for _ in range(n)]
                payloads = [payload([i] * 8, tokens) for i in range(n)]
                duration, load = await run_requests(
                    session,
                    url + "/generate",
                    payloads,
                    timings,
                    request_rate=float("inf"),
                    max_concurrency=concurrency,
                    seed=0,
                    timeout_s=timeout_s,
                )
        return timings, summarize(timings, duration), load

    return asyncio.run(go())


def truth(log: Path, timings: list[RequestTiming]) -> dict[str, float]:
    """The same metrics from what the server did: its write times of each request's chunks (the last pass's lines
    in its log), against the client's send time of that request, on the shared monotonic clock."""
    import numpy as np

    lines = [json.loads(line) for line in log.read_text().splitlines()][-len(timings) :]
    ttft, itl, tpot = [], [], []
    for line in lines:
        start, sends = timings[line["id"]].start, line["sends"]
        ttft.append((sends[0][0] - start) * 1000)
        for (t0, n0), (t1, n1) in zip(sends, sends[1:]):
            itl += [(t1 - t0) * 1000 / (n1 - n0)] * (n1 - n0)
        tpot.append((sends[-1][0] - sends[0][0]) * 1000 / (sends[-1][1] - 1))
    return {
        "median_ttft_ms": float(np.median(ttft)),
        "mean_ttft_ms": float(np.mean(ttft)),
        "median_itl_ms": float(np.median(itl)),
        "mean_itl_ms": float(np.mean(itl)),
        "median_tpot_ms": float(np.median(tpot)),
    }


def near(observed: float, truth: float, slack: float = 0.0) -> bool:
    return abs(observed - truth) <= REL * truth + slack


def assert_matches_truth(m: dict, true: dict) -> None:
    for key, value in true.items():
        assert near(m[key], value, 0.5), (key, m[key], value)  # 2 % (+0.5 ms for the loopback)


def test_every_metric_is_within_2_percent_of_the_servers_truth(tmp_path):
    with timed_server("--ttft-ms", "50", "--itl-ms", "10", "--log", str(tmp_path / "sends.jsonl")) as url:
        timings, m, load = measure(url)
    verify(timings, "timed")
    assert m["completed"] == 16 and m["failed"] == 0
    assert_matches_truth(m, truth(tmp_path / "sends.jsonl", timings))
    # and the server kept its schedule closely enough for the shape to hold: TTFT about 50 ms, ITL 10 ms
    assert 49 < m["median_ttft_ms"] < 60 and near(m["mean_itl_ms"], 10), m
    assert near(m["output_throughput"], 16 * 64 / m["duration_s"]) and near(
        m["input_throughput"], 16 * 8 / m["duration_s"]
    )
    assert near(m["concurrency"], 16 * m["mean_e2e_latency_ms"] / 1000 / m["duration_s"])
    assert 15.0 < m["concurrency"] <= 16.0  # all 16 in flight for nearly the whole run
    assert load.cpu_per_wall < 0.9


def test_spread_over_processes_every_metric_is_still_within_2_percent(tmp_path):
    """Two client processes, each every other request, one shared clock: the merged metrics are the truth's."""
    from harness.evals.perf.spread import processes_for, send_spread

    assert (processes_for(200, None, "auto"), processes_for(600, None, 2), processes_for(600, 1, "auto")) == (1, 2, 1)
    with timed_server("--ttft-ms", "50", "--itl-ms", "10", "--log", str(tmp_path / "sends.jsonl")) as url:
        timings = [RequestTiming(8, 64) for _ in range(32)]
        duration, load = send_spread(
            url + "/generate",
            [payload([i] * 8, 64) for i in range(32)],
            timings,
            processes=2,
            request_rate=float("inf"),
            max_concurrency=None,
            seed=0,
            timeout_s=30,
        )
    verify(timings, "spread")
    m = summarize(timings, duration)
    assert m["completed"] == 32 and load.cpu_per_wall < 0.9
    assert_matches_truth(m, truth(tmp_path / "sends.jsonl", timings))
    assert 30.0 < m["concurrency"] <= 32.0  # both workers' streams in flight together


def test_multi_token_chunks_pool_itl_per_token_and_count_the_first_chunk_as_ttft(tmp_path):
    with timed_server(
        "--ttft-ms", "50", "--itl-ms", "10", "--chunk-tokens", "4", "--log", str(tmp_path / "s.jsonl")
    ) as url:
        timings, m, _ = measure(url)
    assert all(len(t.itl) == 60 for t in timings)  # 64 tokens: the first chunk brought 4, 15 more chunks of 4
    assert_matches_truth(m, truth(tmp_path / "s.jsonl", timings))
    assert 79 < m["median_ttft_ms"] < 90 and near(m["mean_itl_ms"], 10), m  # the first chunk: TTFT + 3 ITL


def test_an_empty_first_chunk_and_a_textless_last_chunk_change_nothing(tmp_path):
    flags = (
        "--ttft-ms",
        "50",
        "--itl-ms",
        "10",
        "--empty-first-chunk",
        "--usage-last",
        "--log",
        str(tmp_path / "s.jsonl"),
    )
    with timed_server(*flags) as url:
        timings, m, _ = measure(url, n=4)
    verify(timings, "timed")
    assert_matches_truth(m, truth(tmp_path / "s.jsonl", timings))
    assert all(t.output_len == 64 for t in timings)


def test_tokens_before_any_text_delay_ttft_as_bench_serving_counts_it_and_are_counted_apart(tmp_path):
    """SGLang streams a chunk per token with the cumulative text, empty while the output decodes to nothing: TTFT
    (bench_serving's, to the first text) then includes that decode; the first token's time and the count are kept."""
    from harness.evals.perf.measure import late_text

    with timed_server(
        "--ttft-ms", "40", "--itl-ms", "10", "--text-after", "5", "--log", str(tmp_path / "s.jsonl")
    ) as url:
        timings, m, _ = measure(url, n=4)
    verify(timings, "timed")
    assert all(t.tokens_before_text == 5 and len(t.itl) == 58 for t in timings)  # tokens 7..64 add ITL
    assert_matches_truth(m, truth(tmp_path / "s.jsonl", timings))  # the truth's first send is the first text
    assert 89 < m["median_ttft_ms"] < 100 and 39 < m["median_first_token_ms"] < 50, m  # 40 + 5 x 10 ms, and 40 ms
    assert (m["text_late_requests"], m["max_tokens_before_text"]) == (4, 5)
    assert matches(
        "4 of 4 requests streamed up to 5 tokens before any text: their TTFT (bench_serving's, to the first "
        "text) includes that decode; to the first token, text or not: p99 *..* ms",
        late_text([m]),
    )
    assert late_text([{**m, "text_late_requests": 0}]) is None


@pytest.mark.parametrize(
    "flags, error",
    [
        (("--stall-after", "10"), "no complete answer within 1 s (a stalled stream)"),
        (("--wrong-count",), "63 output tokens streamed, 64 asked for (ignore_eos)"),
        (("--text-after", "64"), "64 output tokens streamed and no text: no TTFT (bench_serving's, to the first text)"),
    ],
)
def test_a_stalled_stream_or_a_wrong_token_count_is_an_error_before_any_timing(flags, error):
    with timed_server("--ttft-ms", "5", "--itl-ms", "1", *flags) as url:
        timings, _, _ = measure(url, n=3, timeout_s=1.0)
    with pytest.raises(PerfRunInvalid) as caught:
        verify(timings, "serving_perf[m/c] light")
    assert (
        str(caught.value) == f"serving_perf[m/c] light: 3 of 3 requests failed, so no timing is judged; first: {error}"
    )


# -- real pytest runs of the harness ---------------------------------------------------------------------------------

PROJECT = """\
models:
  timed:
    path: {model}
    engine: hf
    options:
      serving_perf:
        repeats: 2
        workloads:
          saturating: {{input_len: 16, output_len: 32, num_prompts: 16, warmup: 1, gate: [output_throughput]}}
          light: {{input_len: 16, output_len: 32, num_prompts: 4, max_concurrency: 1, warmup: 1, gate: [ttft_ms, itl_ms]}}
    configs:
      cfg:
        args: []
        suites: [serving_perf]
references:
  serving_perf:
    timed:
      - {{metric: output_throughput, match: {{gpu: {gpu}}}, value: {throughput}, min_ratio: 0.8, provenance: timed server}}
      - {{metric: ttft_ms, match: {{gpu: {gpu}}}, value: 50.0, max_ratio: 1.25, provenance: timed server}}
      - {{metric: itl_ms, match: {{gpu: {gpu}}}, value: 10.0, max_ratio: 1.25, provenance: timed server}}
"""
# 16 requests at once, each 50 + 31 * 10 ms: 512 tokens in 0.36 s
THROUGHPUT = 16 * 32 / 0.36


def project(root: Path, gpu: str = "cpu") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    (root / "thresholds.yaml").write_text(PROJECT.format(model=CANARY, gpu=gpu, throughput=round(THROUGHPUT, 1)))
    (root / "suites").mkdir(exist_ok=True)
    (root / "suites" / "test_serving_perf.py").write_text((REPO / "suites" / "test_serving_perf.py").read_text())
    return root


def test_a_reference_for_this_gpu_judges_the_run(tmp_path):
    with timed_server("--ttft-ms", "50", "--itl-ms", "10") as url:
        run = run_inner(project(tmp_path), "--harness-base-url", url, "--harness-gpus", "")
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "pass", run.output[-3000:]
    assert set(row["metrics"]) == {"output_throughput", "ttft_ms", "itl_ms"}
    assert len(row["details"]["workloads"]["saturating"]["repeats"]) == 2
    assert "serving_perf[timed/cfg]: itl_ms" in run.output and "≤ max 12.50" in run.output, run.output[-2000:]
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
        f"--dataset-name sharegpt --dataset-path {tmp_path / 'x.json'} --sharegpt-context-len 96 --sharegpt-output-len 32"
        in joined
    )
    assert "--tokenize-prompt" not in cmd and cmd[-3:] == ["--max-concurrency", "1", "--flush-cache"]
    ids = Workload.from_options("r", {"input_len": 64, "output_len": 32, "num_prompts": 8}, "w")
    assert "--dataset-name random-ids --tokenize-prompt" in " ".join(
        command("u", "tok", ids, 3, tmp_path / "o", flush_cache=False)
    )
    assert "--flush-cache" not in command("u", "tok", ids, 3, tmp_path / "o", flush_cache=False)


def test_a_slowed_server_fails_naming_the_metric_value_reference_and_ratio(tmp_path):
    with timed_server("--ttft-ms", "50", "--itl-ms", "20") as url:
        run = run_inner(project(tmp_path), "--harness-base-url", url, "--harness-gpus", "")
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "fail"
    line = next(line for line in run.output.splitlines() if line.startswith("serving_perf[timed/cfg]: itl_ms"))
    assert matches(
        "serving_perf[timed/cfg]: itl_ms * > max 12.50 (1.25 × ref 10.00) — thresholds.yaml "
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


def test_sharegpt_prompts_are_filtered_by_tokens_picked_by_seed_and_sent_as_text(tmp_path):
    from transformers import AutoTokenizer

    from harness.errors import ConfigError
    from harness.evals.perf.workload import Workload, sharegpt_requests

    tokenizer = AutoTokenizer.from_pretrained(CANARY)
    words = "Ann has seven red pens and buys twelve more at the shop"
    conversations = [
        {"conversations": [{"from": "human", "value": words[: 20 + 3 * i]}, {"from": "gpt", "value": words}]}
        for i in range(10)
    ]
    conversations += [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": words}]},  # too short
        {"conversations": [{"from": "human", "value": words * 20}, {"from": "gpt", "value": words}]},  # too long
        {"conversations": [{"from": "human", "value": words}]},
    ]  # one turn
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(conversations))
    own_lengths = Workload.from_options(
        "s", {"input_len": 64, "num_prompts": 8, "dataset": "sharegpt", "dataset_path": "x"}, "w"
    )
    requests = sharegpt_requests(own_lengths, tokenizer, path, seed=0)
    assert len(requests) == 10  # 8 prompts and 2 warm-up, from the 10 usable conversations
    reply = len(tokenizer.encode(words, add_special_tokens=False))
    assert {n for _, n in requests} == {reply} and {text for text, _ in requests} == {
        words[: 20 + 3 * i] for i in range(10)
    }
    assert (
        requests
        == sharegpt_requests(own_lengths, tokenizer, path, seed=0)
        != sharegpt_requests(own_lengths, tokenizer, path, seed=1)
    )
    fixed = Workload.from_options(
        "s", {"input_len": 64, "output_len": 16, "num_prompts": 8, "dataset": "sharegpt", "dataset_path": "x"}, "w"
    )
    assert {n for _, n in sharegpt_requests(fixed, tokenizer, path, seed=0)} == {16}
    too_many = Workload.from_options(
        "s", {"input_len": 64, "num_prompts": 20, "dataset": "sharegpt", "dataset_path": "x"}, "w"
    )
    with pytest.raises(ConfigError) as caught:
        sharegpt_requests(too_many, tokenizer, path, seed=0)
    assert str(caught.value) == (
        f"serving_perf.workloads.s: {path} has 10 usable conversations (2+ turns, 4+ tokens "
        "each, prompt <= input_len 64); 22 needed"
    )
    with pytest.raises(
        ConfigError, match=r"w\.s\.dataset: unknown workload dataset 'sharegtp' \(did you mean 'sharegpt'\?\)"
    ):
        Workload.from_options("s", {"dataset": "sharegtp"}, "w")


def test_bench_serving_side_by_side_judges_paired_medians_where_both_tools_repeat_within_tolerance():
    from harness.evals.perf.bench_serving import side_by_side

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

    from harness.evals.perf.bench_serving import rejudge, side_by_side

    ours = [{"workload": "light", "repeat": k, "median_itl_ms": v} for k, v in ((1, 10.0), (2, 10.4))]
    theirs = [
        {"workload": "light", "repeat": k, "tool": "bench_serving", "median_itl_ms": v}
        for k, v in ((1, 10.2), (2, 10.1))
    ]
    rows = [ours[0], theirs[0], theirs[1], ours[1], {"workload": "saturating", "repeat": 1, "median_itl_ms": 9.0}]
    samples = tmp_path / "serving_perf__m__c.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert rejudge(samples) == [side_by_side("light", ours, theirs)["line"], "saturating: no bench_serving run"]


VLM_PROJECT = """\
models:
  vlm:
    path: {model}
    engine: hf
    options:
      serving_perf:
        repeats: 1
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
    """A VLM shape: chat streams with two noise images each, token counts from usage (image tokens included)."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    (tmp_path / "thresholds.yaml").write_text(VLM_PROJECT.format(model=REPO / "assets" / "canary-vlm" / "model"))
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "test_serving_perf.py").write_text((REPO / "suites" / "test_serving_perf.py").read_text())
    run = run_inner(tmp_path, "--harness-no-reference")
    row = run.rows()["serving_perf"]
    assert row["verdict"] == "recorded", run.output[-3000:]
    (repeat,) = row["details"]["workloads"]["images"]["repeats"]
    assert (repeat["completed"], repeat["failed"]) == (4, 0)
    assert repeat["input_throughput"] * repeat["duration_s"] > 4 * 2 * 4  # the images' tokens are in the prompt counts
    assert row["details"]["workloads"]["images"]["workload"]["image_size"] == [64, 48]
    assert_clean(run)


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


@pytest.mark.parametrize("processes", [1, 2])
def test_connections_per_request_opens_a_connection_for_every_request_keep_alive_reuses_them(tmp_path, processes):
    """`connections: per_request` (as bench_serving, a session per request) against the default keep-alive: the
    timed server logs the client port of every request."""
    from harness.evals.serving_perf import _send

    ports = {}
    for fresh in (False, True):
        log = tmp_path / f"{fresh}.jsonl"
        with timed_server("--ttft-ms", "2", "--itl-ms", "1", "--log", str(log)) as url:
            requests = [([i] * 8, 4) for i in range(8)]
            timings, _, _ = asyncio.run(
                _send(url + "/generate", requests, float("inf"), 2, 0, 30, processes, fresh_connections=fresh)
            )
        verify(timings, "connections")
        ports[fresh] = {json.loads(line)["peer_port"] for line in log.read_text().splitlines()}
    assert len(ports[True]) == 8  # one connection per request
    assert len(ports[False]) <= 2  # at most two in flight, per process: each keeps its connections
    assert None not in ports[True] | ports[False]


FAKE_SERVING = """
import json, os, sys, time, urllib.request
from sglang.benchmark.datasets import DatasetRow

def get_dataset(args, tokenizer, model_id=None):
    return [DatasetRow(prompt=[7, 7], prompt_len=2, output_len=3)]  # its own draw

def post(url, body):  # seconds to the first streamed `data:` line: bench_serving's TTFT, give or take the parse
    start, request = time.perf_counter(), urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
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
            "          saturating: {input_len: 16, output_len: 32, num_prompts: 16, warmup: 1, gate: [output_throughput]}\n",
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
    from harness.evals.perf.bench_serving import rejudge

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


def test_a_workloads_connections_names_its_choices():
    from harness.errors import ConfigError
    from harness.evals.perf.workload import Workload

    with pytest.raises(ConfigError) as err:
        Workload.from_options("light", {"connections": "keepalive"}, "serving_perf.workloads")
    assert str(err.value) == (
        "serving_perf.workloads.light.connections: unknown connections 'keepalive' (did you mean "
        "'keep_alive'?); valid choices: keep_alive, per_request"
    )


@pytest.mark.parametrize(
    "option, value, message",
    [
        (
            "connections",
            "per-request",
            "serving_perf.connections: unknown connections 'per-request' (did you mean "
            "'per_request'?); valid choices: keep_alive, per_request",
        ),
        (
            "bench_serving_prompts",
            "harness",
            "serving_perf.bench_serving_prompts: unknown bench_serving_prompts 'harness'; valid choices: own, same",
        ),
    ],
)
def test_a_suite_option_names_its_choices(option, value, message):
    from harness.errors import ConfigError
    from harness.evals.serving_perf import ServingPerf

    ctx = type("Ctx", (), {"options": {option: value}})()
    with pytest.raises(ConfigError) as err:
        asyncio.run(ServingPerf()(ctx))
    assert str(err.value) == message


def test_the_same_requests_without_a_flush_is_refused():
    """Without a flush, the second tool of a repeat would find the first one's prompts in the prefix cache."""
    from harness.errors import ConfigError
    from harness.evals.serving_perf import ServingPerf

    ctx = type("Ctx", (), {"options": {"bench_serving": True, "flush_cache": False}})()
    with pytest.raises(
        ConfigError, match=r"^serving_perf: bench_serving_prompts: same needs flush_cache: true \(without"
    ):
        asyncio.run(ServingPerf()(ctx))


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


def test_by_request_keeps_each_requests_send_time_ttft_and_latency_in_the_order_given():
    from harness.evals.perf.measure import RequestTiming, by_request

    timings = [
        RequestTiming(4, 2, start=10.0, ttft=0.05, latency=0.5),
        RequestTiming(4, 2, start=10.501, ttft=0.06, latency=0.4),
        RequestTiming(4, 2, start=10.9015, error="HTTP 500"),
    ]
    timings[1].first_token = 0.052
    assert by_request(timings) == {
        "start_ms": [0.0, 501.0, 901.5],
        "ttft_ms": [50.0, 60.0, None],
        "first_token_ms": [50.0, 52.0, None],
        "e2e_ms": [500.0, 400.0, None],
    }


def test_ttft_by_request_pairs_request_k_of_both_tools_and_reads_the_harness_s_refill_gap():
    from harness.evals.perf.bench_serving import ttft_by_request

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
