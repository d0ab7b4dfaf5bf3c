"""Generated-token logprobs on a prefill cache hit vs a cold replay (k3 KL),
for every (model, config) of thresholds.yaml that lists `logprob_prefill_cache_hit`."""

from harness.evals.logprob_prefill_cache_hit import LogprobPrefillCacheHit


def test_logprob_prefill_cache_hit(harness):
    harness.check(harness.run(LogprobPrefillCacheHit()))
