"""The multimodal prefix cache: images keyed by content and position, hits serving the right state."""

from harness.evals.mm_prefix_cache import MMPrefixCache


def test_mm_prefix_cache(harness):
    harness.check(harness.run(MMPrefixCache()))
