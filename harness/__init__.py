"""SGLang validation harness: launch servers from thresholds.yaml, run suites, judge against references."""

__version__ = "0.1.0"
