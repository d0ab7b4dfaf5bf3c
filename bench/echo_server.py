"""A no-work server for client-cost benchmarks: answers /generate and /v1/completions at once.

Every answer is the same short GSM8K-shaped completion, so what a benchmark measures against it is the
client's own cost (request building, HTTP, parsing, bookkeeping), not the model's.
"""

from __future__ import annotations

import argparse
import time

from aiohttp import web

ANSWER = " Bob has 1 + 1 = 2 pens.\n#### 2"


async def generate(request: web.Request) -> web.Response:
    body = await request.json()
    items = body.get("text")
    one = {
        "text": ANSWER,
        "output_ids": [1, 2, 3],
        "meta_info": {
            "id": "echo",
            "finish_reason": {"type": "stop", "matched": 2},
            "prompt_tokens": 1,
            "completion_tokens": 3,
            "cached_tokens": 0,
            "e2e_latency": 0.0,
        },
    }
    return web.json_response([one] * len(items) if isinstance(items, list) else one)


async def completions(request: web.Request) -> web.Response:
    body = await request.json()
    prompts = body.get("prompt")
    count = len(prompts) if isinstance(prompts, list) and prompts and not isinstance(prompts[0], int) else 1
    return web.json_response(
        {
            "id": "echo",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model", "echo"),
            "choices": [{"index": i, "text": ANSWER, "finish_reason": "stop", "logprobs": None} for i in range(count)],
            "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
        }
    )


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.add_routes(
        [
            web.post("/generate", generate),
            web.post("/v1/completions", completions),
            web.get("/health", health),
            web.get("/health_generate", health),
            web.get("/server_info", lambda r: web.json_response({"engine": "echo"})),
        ]
    )
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
