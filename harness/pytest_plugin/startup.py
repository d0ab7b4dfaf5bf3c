"""What is wrong with a run is said before it starts, once, as a pytest usage error (`ERROR: ...`, exit 4):
a malformed option at configure time; a missing local model directory of a selected config after selection
(-k, -m, shards), before any server starts. A run that never starts (a usage error, `--collect-only`) leaves no
report directory behind: its junit.xml, the only file it would have written there, is not written.
"""

from __future__ import annotations

import pytest

from harness.errors import ConfigError

OWN_JUNIT = pytest.StashKey[str]()  # the junit.xml path the plugin set (in the run's report directory)


def check_options(config: pytest.Config) -> None:
    """Options whose value is wrong whatever runs: the base URL, the shard, attach without a URL."""
    from harness.serve.server_io import normalise_url

    opt = config.option
    if opt.harness_base_url:
        try:
            normalise_url(opt.harness_base_url)
        except ConfigError:
            url = str(opt.harness_base_url).strip()
            hint = f" (did you mean 'http://{url}'?)" if "://" not in url else ""
            raise pytest.UsageError(
                f"--harness-base-url (or HARNESS_BASE_URL): expected http://host:port or https://host:port, "
                f"got {opt.harness_base_url!r}{hint}"
            ) from None
    elif opt.harness_engine == "attach":
        raise pytest.UsageError("--harness-engine attach needs --harness-base-url (or HARNESS_BASE_URL)")
    parse_shard(opt.harness_shard)


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """'1/4' -> (1, 4); None stays None; anything else is a usage error naming the option."""
    if value is None:
        return None
    index, sep, count = value.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        raise pytest.UsageError(f"--harness-shard: expected I/N with 0 <= I < N (e.g. 0/4), got {value!r}")
    return int(index), int(count)


def check_model_paths(harness, cases) -> None:
    """The selected configs' local model directories exist (attached: the model lives with the remote server)."""
    if harness.config.option.harness_base_url or not cases:
        return
    from harness.config.model_paths import missing_model_paths

    pairs = dict.fromkeys((case.spec.model, case.spec.config) for case in cases)
    problems = missing_model_paths(harness.thresholds, pairs)
    if problems:
        raise usage_error(harness.config, "\n".join(problems))


def usage_error(config: pytest.Config, message: str) -> pytest.UsageError:
    """The error that stops the run before it starts, with the run's junit.xml (and so its directory) dropped."""
    from _pytest.junitxml import xml_key  # junitxml's own handle: its unconfigure does the same

    xml = config.stash.get(xml_key, None)
    if xml is not None and config.option.xmlpath == config.stash.get(OWN_JUNIT, None):
        del config.stash[xml_key]
        config.pluginmanager.unregister(xml)
    return pytest.UsageError(message)
