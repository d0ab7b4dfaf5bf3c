"""MMMU answered by the server under test and by the HF reference engine on the same weights, question by question."""

from harness.evals.mmmu_parity import MMMUParity


def test_mmmu_parity(harness):
    harness.check(harness.run(MMMUParity()))
