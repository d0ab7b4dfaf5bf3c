"""Serving the model under test: the server pool, one server's lifecycle, process groups, GPUs, engine adapters,
deployments."""
