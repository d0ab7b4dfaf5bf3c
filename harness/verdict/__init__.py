"""From measured metrics to verdicts: the statistics, the object that owns one check's verdict and message, error
control."""
