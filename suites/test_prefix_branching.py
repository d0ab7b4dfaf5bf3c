"""Prefix-cache reuse where requests branch, against the server's own cache layout,
for every (model, config) of thresholds.yaml that lists `prefix_branching`."""

from harness.evals.prefix_branching import PrefixBranching


def test_prefix_branching(harness):
    harness.check(harness.run(PrefixBranching()))
