"""A fault-injecting HTTP proxy for the reliability tests: forwards to a real engine and breaks one thing.

    python tests/servers/fault_proxy.py --upstream URL --port P --fault NAME [--after N] [--count N]

Only `/generate` answers are touched (health, server and model info pass through), after the first `--after`
of them went through untouched:
- none: forward everything.
- 5xx-burst: the next `--count` /generate requests answer 503, then forwarding resumes (a server warming up).
- 5xx-always: every /generate answers 500, and so does every OpenAI completion or chat completion.
- malformed: /generate answers HTTP 200 with a JSON body cut off mid-way.
- hang: every request from then on (health included) is accepted and never answered (a wedged scheduler).
- nan-logprobs: every logprob in a /generate answer becomes NaN, written as SGLang's orjson writes it (null).
- no-cached-tokens: meta_info loses `cached_tokens` (an SGLang that does not report it there).
- shift-hits: every output-token logprob of an answer that reports `cached_tokens` > 0 is lowered by `--shift`
  nats (a cache that serves a slightly wrong state); cold answers pass untouched.
- wrong-answers: the text of `--rate` percent of /generate answers, chosen by a hash of the request body (the same
  questions every run), becomes "#### -1" (a build that gets a few questions wrong; `--wrong-text` sets it).
Request faults, on `/v1/chat/completions` (an engine that mishandles images):
- drop-image: the last `image_url` part of every message is removed (a one-image question loses its image).
- reorder-images: the `image_url` parts of every message are reversed in place; text parts stay where they are.
- drop-late-images: the second half of the `image_url` parts is removed (a video whose later frames are lost).
- repeat-first-image: every `image_url` part becomes a copy of the first (one frame sent for all of a video).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib

import aiohttp
import orjson
from aiohttp import web

FAULTS = (
    "none",
    "5xx-burst",
    "5xx-always",
    "malformed",
    "hang",
    "nan-logprobs",
    "no-cached-tokens",
    "shift-hits",
    "wrong-answers",
    "drop-image",
    "reorder-images",
    "drop-late-images",
    "repeat-first-image",
)
IMAGE_FAULTS = ("drop-image", "reorder-images", "drop-late-images", "repeat-first-image")


def rewrite_images(fault: str, body: bytes) -> bytes:
    request = orjson.loads(body)
    for message in request.get("messages", []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        at = [i for i, part in enumerate(content) if part.get("type") == "image_url"]
        if fault == "drop-image" and at:
            del content[at[-1]]
        elif fault == "reorder-images":
            images = [content[i] for i in at][::-1]
            for i, part in zip(at, images):
                content[i] = part
        elif fault == "drop-late-images" and len(at) > 1:
            for i in reversed(at[(len(at) + 1) // 2 :]):
                del content[i]
        elif fault == "repeat-first-image" and at:
            for i in at[1:]:
                content[i] = dict(content[at[0]])
    return orjson.dumps(request)


def nan_logprobs(meta: dict) -> None:
    for key in ("output_token_logprobs", "input_token_logprobs"):
        if meta.get(key):
            meta[key] = [[float("nan"), *entry[1:]] for entry in meta[key]]


def shift_hits(meta: dict, shift: float) -> None:
    if meta.get("cached_tokens", 0) > 0 and meta.get("output_token_logprobs"):
        meta["output_token_logprobs"] = [[entry[0] - shift, *entry[1:]] for entry in meta["output_token_logprobs"]]


def rewrite(fault: str, answer, shift: float = 0.0):
    for item in answer if isinstance(answer, list) else [answer]:
        meta = item.get("meta_info", {})
        if fault == "nan-logprobs":
            nan_logprobs(meta)
        elif fault == "no-cached-tokens":
            meta.pop("cached_tokens", None)
        elif fault == "shift-hits":
            shift_hits(meta, shift)
    return orjson.dumps(answer)  # NaN -> null, as SGLang's answers carry it


class Proxy:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.generates = 0
        self.hanging = False
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        fault, body = self.args.fault, await request.read()
        if self.hanging:
            await asyncio.Event().wait()  # accepted, never answered
        if request.path == "/generate":
            self.generates += 1
            faulty = self.generates > self.args.after
            if faulty and fault == "hang":
                self.hanging = True
                await asyncio.Event().wait()
            if faulty and fault == "5xx-burst" and self.generates <= self.args.after + self.args.count:
                return web.Response(status=503, text="Service Unavailable (injected)")
            if faulty and fault == "5xx-always":
                return web.Response(status=500, text="Internal Server Error (injected)")
        if fault == "5xx-always" and request.path in ("/v1/completions", "/v1/chat/completions"):
            return web.Response(status=500, text="Internal Server Error (injected)")
        if request.path == "/v1/chat/completions" and fault in IMAGE_FAULTS and body:
            body = rewrite_images(fault, body)
        headers = {"Content-Type": "application/json"} if body else None
        url = self.args.upstream + request.path_qs
        async with self.session.request(request.method, url, data=body or None, headers=headers) as upstream:
            payload, status, content_type = await upstream.read(), upstream.status, upstream.content_type
        if request.path == "/generate" and status == 200 and self.generates > self.args.after:
            if fault == "malformed":
                payload = payload[: len(payload) // 2]
            elif fault in ("nan-logprobs", "no-cached-tokens", "shift-hits"):
                payload = rewrite(fault, orjson.loads(payload), self.args.shift)
            elif fault == "wrong-answers" and int(hashlib.sha256(body).hexdigest(), 16) % 100 < self.args.rate:
                answer = orjson.loads(payload)
                answer["text"] = self.args.wrong_text
                payload = orjson.dumps(answer)
        return web.Response(body=payload, status=status, content_type=content_type)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fault", choices=FAULTS, default="none")
    parser.add_argument("--after", type=int, default=0, help="untouched /generate requests before the fault")
    parser.add_argument("--count", type=int, default=3, help="5xx-burst: how many requests answer 503")
    parser.add_argument("--shift", type=float, default=0.0, help="shift-hits: nats taken off each hit token")
    parser.add_argument("--rate", type=float, default=5.0, help="wrong-answers: percent of answers made wrong")
    parser.add_argument("--wrong-text", default="#### -1", help="wrong-answers: the text a wrong answer becomes")
    proxy = Proxy(parser.parse_args())
    proxy.session = aiohttp.ClientSession()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", proxy.args.port).start()
    print(f"fault proxy on 127.0.0.1:{proxy.args.port} -> {proxy.args.upstream} ({proxy.args.fault})", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
