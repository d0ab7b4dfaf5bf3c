"""The engine's refusals: `RequestError` (HTTP 400) with a did-you-mean, and the checks that turn a JSON value into
the type a field needs or refuse it naming the field."""

from __future__ import annotations

import difflib
from typing import Any


def did_you_mean(value: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close (the harness's rule, kept here so
    the engine stands alone)."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class RequestError(ValueError):
    """A request the engine refuses (HTTP 400)."""

    status_code = 400


def as_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise RequestError(f"{where}: expected true or false, got {value!r}")
    return value


def as_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{where}: expected an integer, got {value!r}")
    return value


def as_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{where}: expected a number, got {value!r}")
    return float(value)


def as_int_list(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in value):
        raise RequestError(f"{where}: expected a list of integers, got {value!r}")
    return value


def as_stop_strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise RequestError(f"{where}: expected a non-empty string or a list of them, got {value!r}")
    return tuple(value)
