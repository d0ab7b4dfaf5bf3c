"""GSM8K accuracy for every (model, config) of thresholds.yaml that lists `gsm8k`."""

from harness.evals.gsm8k import GSM8K


def test_gsm8k(harness):
    harness.check(harness.run(GSM8K()))
