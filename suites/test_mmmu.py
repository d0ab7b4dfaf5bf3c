"""MMMU accuracy for every (model, config) of thresholds.yaml that lists `mmmu`."""

from harness.evals.mmmu import MMMU


def test_mmmu(harness):
    harness.check(harness.run(MMMU()))
