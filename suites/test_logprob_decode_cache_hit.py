"""Generated-token logprobs on a decode cache hit vs a cold replay (k3 KL),
for every (model, config) of thresholds.yaml that lists `logprob_decode_cache_hit`."""

from harness.evals.logprob_decode_cache_hit import LogprobDecodeCacheHit


def test_logprob_decode_cache_hit(harness):
    harness.check(harness.run(LogprobDecodeCacheHit()))
