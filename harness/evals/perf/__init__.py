"""Serving performance: workloads as data (`workload`), streamed requests timed as SGLang's bench_serving times
them (`measure`). The `serving_perf` eval (harness/evals/serving_perf.py) runs them and judges the result."""
