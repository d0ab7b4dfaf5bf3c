"""The false-alarm rate of whole runs, measured: the canary matrix many times on the noisy HF engine.

    python bench/bench_false_alarms.py [--runs 40] [--calibration 4] [--bound 1.5] [--questions 400] [--workers 2]
                                       [--out reports/false-alarms]

Each run is a real inner pytest (`suites/`, the harness's plugin) on the canary's two CPU configs (cpu,
cpu-page16), each an HF engine started with `--logit-noise BOUND --logit-noise-seed S` (a different S per run
and config: greedy outputs then vary from run to run as batched serving's do, hf_engine.runtime.
LogitNoise), running gsm8k (the first `--questions`), logprob_prefill_cache_hit and logprob_decode_cache_hit:
4 + 2 = 6 statistical gates (two accuracy floors, four hit_shift tests) plus the cache suites' kl_div bounds,
which have no α and are left out of every rate here. `error_control: {scope: run, alpha: 0.05}`.

gsm8k's reference is measured first on the noisy engine itself (`--calibration` runs of other seeds, their mean
accuracy; σ = √(p(1−p)), n = questions), as a user measures a reference on the server. Every statistical check
of a run records its p-value (harness.verdict.judge), so each run is judged under both scopes from one execution:
per gate (a gate fails when p < its entry's α: 0.05 for the floors, 0.01 for hit_shift, and a shift also only
when |shift| > min_effect) and per run (p < 0.05 / 6, Bonferroni); the run-scope verdicts are also the harness's
own (checked against the inner run's rows). Printed: per-gate and per-run false-alarm rates beside their
nominal α with 95 % Clopper-Pearson intervals, and the sensitivity left: each clean run's cpu GSM8K answers with
k of its correct answers turned wrong (the drop a broken server would cause, k/n), re-judged at the run-scope
level by harness.verdict.statistics — the fraction caught at a drop of 2θ (θ: the per-gate test's detectable drop)
and the smallest drop caught in ≥ 80 % of runs, beside θ at the run-scope level.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.verdict.checks import StatisticalReference, check_statistical  # noqa: E402
from harness.verdict.statistics import compute_theta  # noqa: E402

SUITES = ("gsm8k", "logprob_prefill_cache_hit", "logprob_decode_cache_hit")
CONFIGS = ("cpu", "cpu-page16")
RUN_ALPHA = 0.05
ENTRY_ALPHA = {"accuracy": 0.05, "hit_shift": 0.01}
KL = "{num_samples: 32, max_prompt_tokens: 300, max_new_tokens: 32, temperature: 1.0, ignore_eos: true, source: canary}"


def thresholds_yaml(seed: int, bound: float, questions: int, reference: float | None) -> str:
    configs = "".join(
        f'      {name}:\n        args: [--logit-noise, "{bound}", --logit-noise-seed, "{2 * seed + i}"{page}]\n'
        f"        suites: [{', '.join(SUITES)}]\n"
        for i, (name, page) in enumerate(zip(CONFIGS, ("", ', --page-size, "16"')))
    )
    gsm8k = (
        "[]"
        if reference is None
        else f"[{{metric: accuracy, value: {reference:.6f}, n: {questions}, "
        f"sigma: {math.sqrt(reference * (1 - reference)):.6f}, "
        "provenance: the bench's calibration runs}]"
    )
    shift = "{metric: hit_shift, alpha: 0.01, min_effect: 0.005, provenance: the repository's entry}"
    return f"""models:
  canary:
    path: {REPO / "assets/canary/model"}
    engine: hf
    dtype: float32
    options:
      gsm8k: {{source: {REPO / "assets/canary/data"}, num_shots: 5, max_new_tokens: 96, limit: {questions}}}
      logprob_prefill_cache_hit: {KL}
      logprob_decode_cache_hit: {KL}
    configs:
{configs}references:
  gsm8k:
    canary: {gsm8k}
  logprob_prefill_cache_hit:
    canary: [{{metric: kl_div, max: 10.0, provenance: not judged here}}, {shift}]
  logprob_decode_cache_hit:
    canary: [{{metric: kl_div, max: 10.0, provenance: not judged here}}, {shift}]
error_control: {{scope: run, alpha: {RUN_ALPHA}}}
"""


def one_run(out: Path, name: str, seed: int, args, reference: float | None) -> dict:
    root = out / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "suites").mkdir(parents=True)
    (root / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    for suite in SUITES:
        shutil.copy(REPO / "suites" / f"test_{suite}.py", root / "suites")
    (root / "thresholds.yaml").write_text(thresholds_yaml(seed, args.bound, args.questions, reference))
    command = [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider", "--harness-concurrency", "8"]
    if reference is None:
        command.append("--harness-no-reference")
    started = time.monotonic()
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    proc = subprocess.run(
        command, cwd=root, capture_output=True, text=True, env=env, start_new_session=True, timeout=1800
    )
    runs = sorted((root / "reports").glob("*/results.json"))
    if not runs:
        raise RuntimeError(
            f"{name}: no results.json; exit {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
        )
    results = json.loads(runs[-1].read_text())
    gates, accuracy = [], {}
    for test in results["tests"]:
        config = test["case"].split("/", 1)[1]
        if test["suite"] == "gsm8k" and test.get("metrics"):
            accuracy[config] = {"accuracy": test["metrics"]["accuracy"], "n": test["n"]}
        for check in test.get("checks") or []:
            if "p_value" in check:
                gates.append(
                    {
                        "gate": f"{test['suite']}[{config}] {check['metric']}",
                        "metric": check["metric"],
                        "p": check["p_value"],
                        "within_min_effect": check.get("within_min_effect", False),
                        "passed": check["passed"],
                    }
                )
        if test["verdict"] == "error":
            raise RuntimeError(f"{name}: {test['suite']}[{test['case']}] errored: {test.get('error')}")
    return {
        "name": name,
        "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
        "gates": gates,
        "accuracy": accuracy,
        "family": results["run"].get("error_control", {}).get("size"),
    }


def fails(gate: dict, alpha: float) -> bool:
    return gate["p"] < alpha and not gate["within_min_effect"]


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    tail = (1 - confidence) / 2
    return (
        0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1)),
        1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k)),
    )


def rate(k: int, n: int) -> str:
    low, high = clopper_pearson(k, n)
    return f"{k}/{n} = {k / n:.3f} [{low:.3f}, {high:.3f}]"


def sensitivity(runs: list[dict], reference: StatisticalReference, n: int, level: float) -> tuple[float, float, float]:
    """(θ per gate, fraction of runs caught at a drop of 2θ, smallest drop caught in ≥ 80 % of runs) on config cpu."""
    theta = compute_theta(reference.sigma, reference.n, 0.05, 0.2, n)
    at_level = StatisticalReference(reference.value, reference.n, reference.sigma, alpha=level)

    def caught(drop_k: int) -> float:
        hits = [
            not check_statistical(
                "gsm8k", "accuracy", r["accuracy"]["cpu"]["accuracy"] - drop_k / n, at_level, n
            ).passed
            for r in runs
        ]
        return sum(hits) / len(hits)

    two_theta = caught(math.ceil(2 * theta * n))
    smallest = next((k / n for k in range(0, n + 1) if caught(k) >= 0.8), float("nan"))
    return theta, two_theta, smallest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="clean runs (default: %(default)s)")
    parser.add_argument(
        "--calibration", type=int, default=4, help="runs that measure gsm8k's reference first (default: %(default)s)"
    )
    parser.add_argument("--bound", type=float, default=1.5, help="--logit-noise of every engine (default: %(default)s)")
    parser.add_argument("--questions", type=int, default=400, help="GSM8K questions per config (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="runs at once (default: %(default)s)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "reports" / "false-alarms", help="work dir (default: %(default)s)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "runs.jsonl", "a")  # noqa: SIM115 - appended to for the whole bench

    def batch(names_seeds, reference):
        done = []
        with ThreadPoolExecutor(args.workers) as pool:
            for run in pool.map(lambda ns: one_run(args.out, ns[0], ns[1], args, reference), names_seeds):
                log.write(json.dumps({**run, "reference": reference}) + "\n")
                log.flush()
                done.append(run)
                shown = ", ".join(f"{config} {a['accuracy']:.4f}" for config, a in run["accuracy"].items())
                print(f"{run['name']}: {run['seconds']} s, accuracy {shown}", flush=True)
        return done

    calibration = batch([(f"calibration-{i}", 1000 + i) for i in range(args.calibration)], None)
    accuracies = [a["accuracy"] for r in calibration for a in r["accuracy"].values()]
    ref_value = sum(accuracies) / len(accuracies)
    print(
        f"reference: gsm8k accuracy {ref_value:.4f} (mean of {len(accuracies)} calibration configs; "
        f"spread {min(accuracies):.4f}..{max(accuracies):.4f})",
        flush=True,
    )
    runs = batch([(f"run-{i}", i) for i in range(args.runs)], ref_value)

    m = runs[0]["family"]
    level = RUN_ALPHA / m
    names = sorted({g["gate"] for r in runs for g in r["gates"]})
    print(
        f"\n{len(runs)} clean runs, noise bound {args.bound}, {args.questions} GSM8K questions per config, "
        f"{m} statistical gates per run (run scope: α {RUN_ALPHA} / {m} = {level:.4g} each)"
    )
    print(f"{'gate':50} {'α':>6}  false alarms per gate (95% CI)")
    for name in names:
        alpha = ENTRY_ALPHA[name.rsplit(" ", 1)[1]]
        k = sum(fails(g, alpha) for r in runs for g in r["gates"] if g["gate"] == name)
        print(f"{name:50} {alpha:>6g}  {rate(k, len(runs))}")
    per_gate = sum(any(fails(g, ENTRY_ALPHA[g["metric"]]) for g in r["gates"]) for r in runs)
    per_run = sum(any(fails(g, level) for g in r["gates"]) for r in runs)
    harness_own = sum(any(not g["passed"] for g in r["gates"]) for r in runs)
    nominal_gate = 1 - math.prod(1 - ENTRY_ALPHA[n.rsplit(" ", 1)[1]] for n in names)
    print(f"runs with a false alarm, scope gate: {rate(per_gate, len(runs))} (nominal up to {nominal_gate:.3f})")
    print(
        f"runs with a false alarm, scope run:  {rate(per_run, len(runs))} (nominal ≤ {RUN_ALPHA}); "
        f"the harness's own verdicts: {harness_own} failing run(s)"
    )
    reference = StatisticalReference(ref_value, args.questions, math.sqrt(ref_value * (1 - ref_value)))
    theta, caught, smallest = sensitivity(runs, reference, args.questions, level)
    theta_run = compute_theta(reference.sigma, reference.n, level, 0.2, args.questions)
    print(
        f"sensitivity (gsm8k[cpu], run scope): θ per gate {theta:.4f}, θ at α {level:.4g} {theta_run:.4f}; "
        f"a drop of 2θ = {2 * theta:.4f} caught in {caught:.0%} of runs; the smallest drop caught in ≥ 80 % "
        f"of runs: {smallest:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
