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


def scrub_url(url: str) -> str:
    """A URL as a report may show it: a password in it (`http://user:pw@host`) and the value of a secret-named
    query parameter (`?api_key=...`, `?token=...`) masked, token-like values masked anywhere."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}:***@{host}" if ":" in user else f"***@{host}"
        query = [
            (key, "***" if _SECRET_FLAG_RE.match("--" + key) else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        url = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), parts.fragment))
    except ValueError:  # not a URL at all (a usage error elsewhere): mask what looks like a token
        pass
    return scrub(url)
