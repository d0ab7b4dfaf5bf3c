"""Secrets never reach logs or reports: server command lines and log text are masked before they are written."""

from __future__ import annotations

import re

_SECRET_FLAG_RE = re.compile(r"^--?(api[-_]key|token|hf[-_]token|password|secret)", re.IGNORECASE)
_SECRET_VALUE_RE = re.compile(r"\b(hf_[A-Za-z0-9]{8,}|sk-[A-Za-z0-9_-]{8,})")


def scrub(text: str) -> str:
    """Mask values that look like HF tokens or API keys."""
    return _SECRET_VALUE_RE.sub("***", text)


def scrub_command(command: list[str]) -> list[str]:
    """Mask the value after any secret-bearing flag (`--api-key X`, `--api-key=X`) and token-like values."""
    out: list[str] = []
    hide_next = False
    for arg in command:
        if hide_next:
            out.append("***")
            hide_next = False
        elif _SECRET_FLAG_RE.match(arg):
            flag, eq, _ = arg.partition("=")
            out.append(f"{flag}=***" if eq else flag)
            hide_next = not eq
        else:
            out.append(scrub(arg))
    return out
