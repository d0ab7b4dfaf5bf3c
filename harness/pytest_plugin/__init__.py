"""The pytest plugin: options, hooks and the session that ties config, servers, evals, verdicts and reports together."""
