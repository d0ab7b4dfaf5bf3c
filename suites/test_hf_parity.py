"""Parity of the server under test with the HF reference engine on the same weights."""

from harness.evals.hf_parity import HFParity


def test_hf_parity(harness):
    harness.check(harness.run(HFParity()))
