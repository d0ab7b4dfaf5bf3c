"""Serving throughput and latency (bench_serving's definitions) on seeded random prompts,
for every (model, config) of thresholds.yaml that lists `serving_perf`."""

from harness.evals.serving_perf import ServingPerf


def test_serving_perf(harness):
    harness.check(harness.run(ServingPerf()))
