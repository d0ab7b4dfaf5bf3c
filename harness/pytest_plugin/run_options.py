"""What results.json records of how a run was run (harness.report.run_info reads it back): the harness options, the
config file and its sha256 as the run read it, the -k/-m selection, the shard, the engine override, the base URL
(secrets masked) and the command line (secrets masked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.report.run_info import file_sha256
from harness.serve.secrets import scrub_command, scrub_url


def run_options(config: pytest.Config, thresholds_path: Path) -> dict[str, Any]:
    opt = config.option
    return {
        "limit": opt.harness_limit,
        "smoke": bool(opt.harness_smoke),
        "no_reference": bool(opt.harness_no_reference),
        "update_thresholds": bool(opt.harness_update_thresholds),
        "config": str(thresholds_path),
        "config_sha256": file_sha256(thresholds_path),
        "keyword": opt.keyword or None,
        "markers": opt.markexpr or None,
        "shard": opt.harness_shard,
        "engine": opt.harness_engine,
        "base_url": scrub_url(opt.harness_base_url) if opt.harness_base_url else None,
        "gpus": opt.harness_gpus,
        "baseline": opt.harness_baseline,
        "args": [_scrub_arg(a) for a in scrub_command([str(a) for a in config.invocation_params.args])],
    }


def _scrub_arg(arg: str) -> str:
    """A URL among the arguments (`--harness-base-url=http://user:pw@host`, or the value alone) with its secrets
    masked."""
    if "://" not in arg:
        return arg
    flag, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    return f"{flag}{eq}{scrub_url(value)}"
