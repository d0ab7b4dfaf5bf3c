"""The one async HTTP client every suite speaks through.

One keep-alive `aiohttp` session per server, orjson on both directions, bounded concurrency, and bounded
retries on transport errors and 5xx answers. Retries are counted apart from answers: a request that still
fails after its retries raises `RequestFailed`, so a dead server fails the test instead of scoring as a
wrong answer. 4xx answers are not retried: they mean the request itself is wrong. Nor is a request that got
no answer within `timeout_s`: a server that hangs for that long is hung, and waiting the timeout out again
per retry would turn one hang into an hour (the session then asks /health what happened). A 200 whose body
is not JSON raises `MalformedResponse`, never a bare decode traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from harness.client import sse
from harness.errors import HarnessError

T = TypeVar("T")
R = TypeVar("R")


class RequestFailed(HarnessError):
    """A request that did not get a usable answer after its retries."""

    def __init__(self, method: str, url: str, status: int | None, detail: str, attempts: int):
        self.status = status
        self.attempts = attempts
        code = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{method} {url} failed after {attempts} attempt(s): {code}: {detail[:500]}")

    @property
    def no_response(self) -> bool:
        """True for transport errors and timeouts (nothing answered), as opposed to an HTTP error status."""
        return self.status is None


class MalformedResponse(RequestFailed):
    """HTTP 200 whose body is not the JSON the API promises (a truncated or garbled answer)."""

    def __init__(self, method: str, url: str, body: bytes, error: Exception):
        self.status, self.attempts = 200, 1
        HarnessError.__init__(
            self, f"{method} {url} answered HTTP 200 with a body that is not JSON ({error}): {body[:200]!r}"
        )


@dataclass(slots=True)
class ClientStats:
    requests: int = 0
    retries: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries, "failures": self.failures}

    def since(self, before: dict[str, int]) -> dict[str, int]:
        """The counts added since `before` (an earlier `as_dict()`): one suite's share of a shared client."""
        return {key: value - before.get(key, 0) for key, value in self.as_dict().items()}


@dataclass(slots=True)
class MapProgress:
    """How far the `Client.map` in flight got: what a verdict on a server lost mid-eval quotes."""

    desc: str | None
    total: int
    done: int = 0


@dataclass(frozen=True, slots=True)
class ClientOptions:
    max_concurrency: int = 64
    max_retries: int = 3
    timeout_s: float = 600.0
    backoff_s: float = 0.5


class Client:
    """Async client for one server. Use `async with Client(url) as c:` or call `close()`."""

    def __init__(self, base_url: str, options: ClientOptions | None = None):
        self.base_url = base_url.rstrip("/")
        self.options = options or ClientOptions()
        self.stats = ClientStats()
        self.progress: MapProgress | None = None  # of the latest map
        self._session = None
        self._semaphore: asyncio.Semaphore | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self):

        if self._session is None:
            self._session = open_session(self.options.max_concurrency, timeout_s=self.options.timeout_s)
            self._semaphore = asyncio.Semaphore(self.options.max_concurrency)
        return self._session

    async def request(self, method: str, path: str, payload: Any = None, ok_statuses: Iterable[int] = (200,)):
        """Send one request with bounded retries; return (status, body bytes)."""
        import aiohttp

        session = self._ensure_session()
        url = self.base_url + path
        data = orjson.dumps(payload) if payload is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        ok = set(ok_statuses)
        attempts = 0
        async with self._semaphore:
            while True:
                attempts += 1
                self.stats.requests += 1
                status, detail = None, ""
                try:
                    async with session.request(method, url, data=data, headers=headers) as resp:
                        body = await resp.read()
                        status = resp.status
                        if status in ok:
                            return status, body
                        detail = body.decode(errors="replace")
                        if status < 500:
                            self.stats.failures += 1
                            raise RequestFailed(method, url, status, detail, attempts)
                except asyncio.TimeoutError:
                    self.stats.failures += 1
                    raise RequestFailed(
                        method, url, None, f"no answer within {self.options.timeout_s:g} s (not retried)", attempts
                    ) from None
                except (aiohttp.ClientError, ConnectionError) as exc:
                    detail = f"{type(exc).__name__}: {exc}"
                if attempts > self.options.max_retries:
                    self.stats.failures += 1
                    raise RequestFailed(method, url, status, detail, attempts)
                self.stats.retries += 1
                await asyncio.sleep(self.options.backoff_s * 2 ** (attempts - 1))

    async def get_json(self, path: str) -> Any:
        _, body = await self.request("GET", path)
        return self._decode("GET", path, body)

    async def post_json(self, path: str, payload: Any) -> Any:
        _, body = await self.request("POST", path, payload)
        return self._decode("POST", path, body)

    def _decode(self, method: str, path: str, body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            self.stats.failures += 1
            raise MalformedResponse(method, self.base_url + path, body, exc) from None

    async def generate(self, payload: dict) -> Any:
        """SGLang native `/generate`: a dict for one prompt, a list for a batch."""
        return await self.post_json("/generate", payload)

    async def completion(self, payload: dict) -> dict:
        return await self.post_json("/v1/completions", payload)

    async def chat(self, payload: dict) -> dict:
        return await self.post_json("/v1/chat/completions", payload)

    async def generate_stream(self, payload: dict) -> AsyncIterator[dict]:
        """Yield each `data: {...}` chunk of a native streaming `/generate` (no retries mid-stream)."""
        session = self._ensure_session()
        async with session.post(self.base_url + "/generate", data=orjson.dumps({**payload, "stream": True})) as resp:
            if resp.status != 200:
                raise RequestFailed("POST", self.base_url + "/generate", resp.status, await resp.text(), 1)
            async for event in sse.events(resp.content):
                if event.done:
                    return
                if event.data is not None:
                    yield event.data

    async def server_info(self) -> dict:
        """`/server_info`, falling back to the older `/get_server_info`."""
        try:
            return await self.get_json("/server_info")
        except RequestFailed as exc:
            if exc.status != 404:
                raise
            return await self.get_json("/get_server_info")

    async def flush_cache(self, attempts: int = 40, delay_s: float = 0.25) -> None:
        """Flush the prefix cache; SGLang answers 400 while requests are in flight, so retry until it takes."""
        for _ in range(attempts):
            status, _ = await self.request("POST", "/flush_cache", ok_statuses=(200, 400))
            if status == 200:
                return
            await asyncio.sleep(delay_s)
        raise RequestFailed("POST", self.base_url + "/flush_cache", 400, "server kept refusing to flush", attempts)

    async def map(self, fn: Callable[[T], Awaitable[R]], items: Iterable[T], progress: str | None = None) -> list[R]:
        """Run `fn` over `items` concurrently (bounded by the session), results in input order."""
        from tqdm.auto import tqdm

        items = list(items)
        bar = tqdm(total=len(items), desc=progress, disable=progress is None or None, leave=False)
        self.progress = tracked = MapProgress(progress, len(items))

        async def one(item: T) -> R:
            result = await fn(item)
            tracked.done += 1
            bar.update(1)
            return result

        tasks = [asyncio.ensure_future(one(i)) for i in items]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # the first failure ends the map: no request keeps running behind the verdict
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            bar.close()


def open_session(limit: int, *, fresh_connections: bool = False, timeout_s: float | None = None):
    """An aiohttp session to a server under test: `limit` connections at most (0: unbounded), keep-alive unless
    `fresh_connections` (one connection per request), an overall per-request timeout if given. Every session the
    harness opens comes from here (the Client's own, and the perf loads', which must not share its cap)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=limit, force_close=fresh_connections)
    timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s is not None else aiohttp.client.DEFAULT_TIMEOUT
    return aiohttp.ClientSession(connector=connector, timeout=timeout)
