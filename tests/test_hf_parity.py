"""hf_parity (harness/evals/hf_parity.py) in a real pytest run on the CPU: the trained canary served by the HF
engine, compared with the HF reference engine the suite starts beside it on the same weights.

Two configs of one model: `same` (no flag: the same engine, fp32 on the same CPU, so every logprob agrees up to
float summation order, here to the last bit, and every greedy output and GSM8K answer is the same) and `drift`
(`--logit-noise 4`, hf_engine's injected drift: uniform noise of up to 4 on every output logit, which moves the
served output logprobs, 1.7e-02 at most on 2026-12-08, and flips greedy tokens whose top two logits are closer than
8, one GSM8K answer of 6 that day). The same references judge both: parity passes for `same` and fails for `drift`,
naming the metric; prompt logprobs, which the noise leaves alone, still agree exactly.
"""

from __future__ import annotations

from pathlib import Path

from inner_run_support import assert_clean, matches, run_inner

REPO = Path(__file__).resolve().parents[1]
PROJECT = """\
models:
  canary:
    path: {repo}/assets/canary/model
    engine: hf
    dtype: float32
    options:
      hf_parity: {{source: {repo}/assets/canary/data, num_prompts: 6, max_new_tokens: 12, gsm8k_questions: 6,
                  gsm8k_max_new_tokens: 48}}
    configs:
      same:
        args: []
        suites: [hf_parity]
      drift:
        args: [--logit-noise, "4.0"]
        suites: [hf_parity]
references:
  hf_parity:
    canary:
      - {{metric: greedy_agreement, min: 1.0, provenance: test}}
      - {{metric: gsm8k_agreement, min: 1.0, provenance: test}}
      - {{metric: prompt_logprob_max_diff, max: 1.0e-4, provenance: test}}
      - {{metric: prompt_logprob_mean_diff, max: 1.0e-5, provenance: test}}
      - {{metric: output_logprob_max_diff, max: 1.0e-4, provenance: test}}
      - {{metric: output_logprob_mean_diff, max: 1.0e-5, provenance: test}}
"""


def test_parity_passes_for_the_same_engine_and_fails_with_injected_drift(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin.hooks"]\n')
    (tmp_path / "thresholds.yaml").write_text(PROJECT.format(repo=REPO))
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "test_hf_parity.py").write_text((REPO / "suites" / "test_hf_parity.py").read_text())
    run = run_inner(tmp_path, timeout=900)
    rows = {row["case"]: row for row in run.results["tests"] if row["suite"] == "hf_parity"}
    same, drift = rows["canary/same"], rows["canary/drift"]
    assert (same["verdict"], drift["verdict"]) == ("pass", "fail"), run.output[-3000:]
    assert (same["details"]["prompt_tokens_compared"], same["details"]["output_tokens_compared"]) == (181, 6 * 12)
    lines = [line for line in run.output.splitlines() if line.startswith("hf_parity[canary/")]
    ref = "— thresholds.yaml references.hf_parity.canary"
    for line in (  # the same engine: identical to the last bit, every answer the same
        f"hf_parity[canary/same]: prompt_logprob_max_diff 0.0e+00 ≤ max 1.0e-04 {ref}[2]",
        f"hf_parity[canary/same]: output_logprob_max_diff 0.0e+00 ≤ max 1.0e-04 {ref}[4]",
        f"hf_parity[canary/same]: output_logprob_mean_diff 0.0e+00 ≤ max 1.0e-05 {ref}[5]",
        f"hf_parity[canary/same]: greedy_agreement 1.000 ≥ min 1.000 {ref}[0]",
        f"hf_parity[canary/same]: gsm8k_agreement 1.000 ≥ min 1.000 {ref}[1]",
        f"hf_parity[canary/drift]: prompt_logprob_max_diff 0.0e+00 ≤ max 1.0e-04 {ref}[2]",  # prompts: no noise
    ):
        assert line in lines, (line, lines)
    # the drift: output logprobs moved (by how much depends on the order requests reached the noisy engine)
    for pattern in (
        f"hf_parity[canary/drift]: output_logprob_max_diff * > max 1.0e-04 {ref}[4]",
        f"hf_parity[canary/drift]: output_logprob_mean_diff * > max 1.0e-05 {ref}[5]",
    ):
        assert any(matches(pattern, line) for line in lines), (pattern, lines)
    assert drift["metrics"]["output_logprob_max_diff"] > 1e-3
    assert_clean(run)
