"""Errors the harness raises on bad input, each naming where the bad value came from."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class ConfigError(HarnessError):
    """A configuration file or option holds a value the harness cannot use."""


class NoReferenceError(ConfigError):
    """No usable reference for a (suite, model, config): none matches, or the match is not measured yet."""


class ProtocolError(HarnessError):
    """The server's answer lacks a field a suite needs (an older or newer API): the suite cannot judge it."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_choice(what: str, value: str, choices: Iterable[str], where: str = "") -> ConfigError:
    """Build the standard 'unknown X' error: where it came from, the value, the valid choices, a hint."""
    choices = sorted(str(c) for c in choices)
    prefix = f"{where}: " if where else ""
    return ConfigError(
        f"{prefix}unknown {what} {value!r}{did_you_mean(value, choices)}; valid choices: {', '.join(choices)}"
    )
