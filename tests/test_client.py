"""The async client against a real local aiohttp server that misbehaves on purpose."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from harness.client.http import Client, ClientOptions, RequestFailed


class Flaky:
    """Answers 503 for the first `failures` calls of a path, then 200; counts every call."""

    def __init__(self, failures: int = 0, flush_busy: int = 0):
        self.failures, self.flush_busy, self.calls = failures, flush_busy, {}

    async def generate(self, request: web.Request) -> web.Response:
        self.calls["generate"] = self.calls.get("generate", 0) + 1
        if self.calls["generate"] <= self.failures:
            return web.Response(status=503, text="warming up")
        body = await request.json()
        if "text" not in body:
            return web.Response(status=400, text="missing text")
        return web.json_response({"text": body["text"][::-1], "meta_info": {"cached_tokens": 0}})

    async def flush(self, request: web.Request) -> web.Response:
        self.calls["flush"] = self.calls.get("flush", 0) + 1
        busy = self.calls["flush"] <= self.flush_busy
        return web.Response(status=400 if busy else 200, text="requests in flight" if busy else "ok")


async def serve(handler: Flaky):
    app = web.Application()
    app.add_routes([web.post("/generate", handler.generate), web.post("/flush_cache", handler.flush)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def run(handler: Flaky, body, options=ClientOptions(max_retries=3, backoff_s=0.01)):
    async def go():
        runner, url = await serve(handler)
        try:
            async with Client(url, options) as client:
                return await body(client), client.stats
        finally:
            await runner.cleanup()

    return asyncio.run(go())


def test_server_errors_are_retried_and_counted_apart_from_answers():
    (answer, stats) = run(Flaky(failures=2), lambda c: c.generate({"text": "abc"}))
    assert answer["text"] == "cba"
    assert (stats.requests, stats.retries, stats.failures) == (3, 2, 0)


def test_a_request_that_keeps_failing_raises_instead_of_returning_an_answer():
    with pytest.raises(
        RequestFailed, match=r"POST http://127.0.0.1:\d+/generate failed after 4 attempt\(s\): HTTP 503: warming up"
    ):
        run(Flaky(failures=10), lambda c: c.generate({"text": "abc"}))


def test_client_errors_are_not_retried():
    with pytest.raises(RequestFailed, match=r"after 1 attempt.*HTTP 400: missing text"):
        run(Flaky(), lambda c: c.generate({"input_ids": [1]}))


def test_a_refused_connection_is_retried_then_reported():
    options = ClientOptions(max_retries=1, backoff_s=0.01)

    async def go():
        async with Client("http://127.0.0.1:9", options) as client:
            await client.generate({"text": "x"})

    with pytest.raises(RequestFailed, match=r"after 2 attempt.*no response: ClientConnectorError"):
        asyncio.run(go())


def test_flush_waits_out_the_400_that_means_requests_in_flight():
    handler = Flaky(flush_busy=3)
    run(handler, lambda c: c.flush_cache(attempts=10, delay_s=0.01))
    assert handler.calls["flush"] == 4


def test_map_keeps_input_order_under_concurrency():
    async def body(client):
        return await client.map(lambda t: client.generate({"text": t}), [f"q{i}" for i in range(20)])

    answers, _ = run(Flaky(), body)
    assert [a["text"] for a in answers] == [f"q{i}"[::-1] for i in range(20)]


def test_stats_since_an_earlier_snapshot_are_one_suites_share():
    from harness.client.http import ClientStats

    stats = ClientStats(requests=10, retries=2, failures=0)
    before = stats.as_dict()
    stats.requests, stats.retries, stats.failures = 25, 3, 1
    assert stats.since(before) == {"requests": 15, "retries": 1, "failures": 1}
    assert stats.since({}) == stats.as_dict()
