"""A streaming `/generate` with known timing, for the serving_perf tests and bench/: the truth the metrics must find.

    python tests/servers/timed_stream_server.py --port P [--ttft-ms 50] [--itl-ms 10] [--chunk-tokens 1]
        [--empty-first-chunk] [--text-after N] [--usage-last] [--stall-after N] [--wrong-count] [--log FILE]

Every request gets its first token `ttft` after it arrived, then one token every `itl` (a chunk every
`chunk_tokens` tokens, so a chunk brings several tokens as under speculative decoding), on an absolute schedule
so jitter does not accumulate. Chunks are SGLang's native stream lines, cumulative: `data: {"text", "output_ids",
"meta_info": {"completion_tokens", ...}}`, then `data: [DONE]`. `--empty-first-chunk` sends a chunk with empty text
first (it must not count as the first token), `--text-after N` streams N tokens whose cumulative text stays empty
(as SGLang does while an output decodes to nothing), `--usage-last` a textless last chunk, `--stall-after N` stops
after N tokens and holds the connection open, `--wrong-count` streams one token fewer than asked.
`--log FILE` appends one JSON line per request: its first input id (tests send one per request), the client's
port (`peer_port`: one per connection), and the
`time.perf_counter()` at which each text chunk was written with its token count: on Linux that clock is
CLOCK_MONOTONIC, shared by every process, so a test compares what the client measured with what the server did.
`POST /flush_cache` answers 200 and, with `--log`, appends `{"flush": time}`.
Also /health, /health_generate, /server_info and /model_info, so the harness's lifecycle can attach to it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import web


def build_app(opts) -> web.Application:
    async def generate(request: web.Request) -> web.StreamResponse:
        arrived = time.perf_counter()
        peer_port = (request.transport.get_extra_info("peername") or (None, None))[1] if request.transport else None
        body = orjson.loads(await request.read())
        wanted = int(body.get("sampling_params", {}).get("max_new_tokens", 16)) - (1 if opts.wrong_count else 0)
        prompt = len(body.get("input_ids") or [])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        sends = []

        async def send(tokens: int, text: str) -> None:
            meta = {"completion_tokens": tokens, "prompt_tokens": prompt, "cached_tokens": 0}
            await resp.write(b"data: " + orjson.dumps({"text": text, "meta_info": meta}) + b"\n\n")
            if text:
                sends.append((time.perf_counter(), tokens))

        if opts.empty_first_chunk:
            await send(0, "")
        sent = 0
        while sent < wanted:
            step = min(opts.chunk_tokens, wanted - sent)
            due = arrived + opts.ttft_ms / 1000 + (sent + step - 1) * opts.itl_ms / 1000
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            if opts.stall_after is not None and sent >= opts.stall_after:
                await asyncio.sleep(3600)
            sent += step
            await send(sent, "x" * max(0, sent - opts.text_after))
        if opts.usage_last:
            await send(sent, "")  # a textless final chunk, as OpenAI-style usage chunks
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        if opts.log:
            with open(opts.log, "ab") as log:
                log.write(
                    orjson.dumps(
                        {
                            "id": (body.get("input_ids") or [None])[0],
                            "prompt": hash(tuple(body.get("input_ids") or ())),
                            "peer_port": peer_port,
                            "sends": sends,
                        }
                    )
                    + b"\n"
                )
        return resp

    async def ok(request):
        return web.json_response(
            {"version": "9.9.9-timed", "page_size": 1, "disable_radix_cache": False, "model_path": "timed/model"}
        )

    async def flush(request):
        if opts.log:
            with open(opts.log, "ab") as log:
                log.write(orjson.dumps({"flush": time.perf_counter()}) + b"\n")
        return web.json_response({"flushed": True})

    async def models(request):  # what sglang.bench_serving polls before it starts
        return web.json_response({"object": "list", "data": [{"id": "timed/model", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/generate", generate)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/flush_cache", flush)
    for path in ("/health", "/health_generate", "/server_info", "/get_server_info", "/model_info", "/get_model_info"):
        app.router.add_get(path, ok)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--itl-ms", type=float, default=10.0)
    parser.add_argument("--chunk-tokens", type=int, default=1)
    parser.add_argument("--empty-first-chunk", action="store_true")
    parser.add_argument("--text-after", type=int, default=0)
    parser.add_argument("--usage-last", action="store_true")
    parser.add_argument("--stall-after", type=int, default=None)
    parser.add_argument("--wrong-count", action="store_true")
    parser.add_argument("--log", default=None)
    opts = parser.parse_args()
    web.run_app(build_app(opts), host=opts.host, port=opts.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
