"""Reading a launch line's flags as SGLang's argparse would (shared by the SGLang adapter, its preflight and
deployments)."""

from __future__ import annotations

from collections.abc import Sequence


def flag_value(args: Sequence[str], *names: str) -> str | None:
    """The value given last to any of `names` (`--f v` or `--f=v`), as argparse would keep it; None if absent."""
    tokens, found = list(args), None
    for i, token in enumerate(tokens):
        name, eq, inline = token.partition("=")
        if name in names:
            found = inline if eq else (tokens[i + 1] if i + 1 < len(tokens) else None)
    return found
