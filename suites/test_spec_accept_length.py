"""Speculative decoding accept length on GSM8K prompts,
for every (model, config) of thresholds.yaml that lists `spec_accept_length`."""

from harness.evals.spec_accept_length import SpecAcceptLength


def test_spec_accept_length(harness):
    harness.check(harness.run(SpecAcceptLength()))
