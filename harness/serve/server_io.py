"""A server's files and endpoints as the lifecycle reads them: the log's tail, a health probe, the first JSON that
answers of several info routes, the base URL a user gave, a fresh log path. Only the stdlib."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never send 127.0.0.1 via a proxy


def read_tail(path: Path, lines: int, max_bytes: int = 256 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - max_bytes, 0))
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def probe(url: str, timeout: float) -> tuple[int | None, str]:
    """(HTTP status or None, a short description of the answer) for one GET."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return response.status, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(reason).__name__}: {reason}"


def get_first_json(base_url: str, paths: tuple[str, ...], timeout: float) -> dict[str, Any] | None:
    """The JSON body of the first path that answers 200; None when none does (old/new endpoint spellings)."""
    for path in paths:
        try:
            with _NO_PROXY.open(base_url + path, timeout=timeout) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            continue
        return body if isinstance(body, dict) else {"data": body}
    return None


def normalise_url(base_url: str) -> str:
    url = str(base_url).strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"base URL {base_url!r}: expected http://host:port (from --harness-base-url / HARNESS_BASE_URL)"
        )
    return url


def masked_env(env: dict[str, str]) -> dict[str, str]:
    secret = ("TOKEN", "KEY", "SECRET", "PASSWORD")
    return {k: ("***" if any(word in k.upper() for word in secret) else v) for k, v in env.items()}


def unused_log_path(log_dir: Path, slug: str) -> Path:
    """`<slug>.log`, or `<slug>.2.log`, ... when an earlier server of this run already wrote one."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path, n = log_dir / f"{slug}.log", 1
    while path.exists():
        n += 1
        path = log_dir / f"{slug}.{n}.log"
    return path
