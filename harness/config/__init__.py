"""thresholds.yaml: loading, the schema, its checks, the suite and metric registries, the server spec, writing
references back (the lowest layer above harness.errors)."""
