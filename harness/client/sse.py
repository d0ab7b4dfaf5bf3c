"""The one reader of server-sent events (SGLang's streaming `/generate` and OpenAI routes): each line of the body
as it arrives, stamped with the time its bytes were read (before any parsing, so a latency measured on it is the
network's and the server's, not the parser's)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Event:
    """One line of an SSE body: its decoded `data:` JSON (None for `[DONE]` and for lines without data)."""

    data: Any
    done: bool  # the `data: [DONE]` line that ends an OpenAI or SGLang stream
    arrived: float  # time.perf_counter() when the line's bytes were read


async def events(content) -> AsyncIterator[Event]:
    """Every line of `content` (an aiohttp response's StreamReader) as an Event, in order."""
    async for raw in content:
        arrived = time.perf_counter()
        line = raw.strip()
        if not line.startswith(b"data:"):
            yield Event(None, False, arrived)
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            yield Event(None, True, arrived)
        else:
            yield Event(orjson.loads(payload), False, arrived)
