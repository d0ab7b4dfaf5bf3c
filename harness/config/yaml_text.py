"""Editing thresholds.yaml as text, so comments, order and layout stay: add a key at the end of a block mapping,
replace one scalar. Positions come from harness.config.yaml_errors.read_yaml's spans; every edit re-reads them."""

from __future__ import annotations

from collections.abc import Callable

from harness.config.yaml_errors import Loc, key_path, read_yaml
from harness.errors import ConfigError


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _child_indent(lines: list[str], spans, loc: Loc) -> int | None:
    keys = [
        s.line for k, s in spans.items() if len(k) == len(loc) + 1 and k[: len(loc)] == loc and isinstance(k[-1], str)
    ]
    return min((_indent(lines[line - 1]) for line in keys), default=None)


def add_key(text: str, source: str, loc: Loc, key: str, value: Callable[[int], str]) -> str:
    """`key:` and its block value as the last key of the mapping at `loc` (created, with its parents, when absent).
    `value(indent)` returns the value's lines, indented deeper than `indent`, the column of `key`."""
    _, spans = read_yaml(text, source)
    if loc and loc not in spans:
        return add_key(text, source, loc[:-1], str(loc[-1]), lambda at: f"{' ' * (at + 2)}{key}:\n{value(at + 2)}")
    lines = text.splitlines()
    indent = _child_indent(lines, spans, loc)
    if indent is None:
        indent = _indent(lines[spans[loc].line - 1]) + 2 if loc else 0
    block = f"{' ' * indent}{key}:\n{value(indent)}"
    if not loc:
        return text + ("" if text.endswith("\n") else "\n") + block
    span = spans[loc]
    flow = text[span.start : span.end].strip()
    if flow.startswith("{"):
        if flow != "{}":
            raise ConfigError(f"{source}: {key_path(loc)} is a flow mapping ({flow[:40]}); write it as a block mapping")
        return text[: span.start].rstrip(" ") + "\n" + block.rstrip("\n") + text[span.end :]
    content_end = len(text[: span.end].rstrip())  # after the mapping's last value, before blank lines
    at = text.find("\n", content_end)
    at = len(text) if at < 0 else at + 1
    return text[:at] + block + text[at:]


def replace_scalar(text: str, source: str, loc: Loc, new: str) -> str:
    """The scalar at `loc` replaced by `new` (already YAML text)."""
    _, spans = read_yaml(text, source)
    if loc not in spans:
        raise ConfigError(f"{source}: {key_path(loc)} does not exist")
    span = spans[loc]
    return text[: span.start] + new + text[span.end :]
