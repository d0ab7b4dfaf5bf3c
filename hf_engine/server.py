"""HF reference engine: an HTTP server over transformers that speaks the part of SGLang's API the suites use.

    python -m hf_engine --model-path DIR --host 127.0.0.1 --port P [--device cpu|cuda]
        [--dtype float32|bfloat16|float16|auto] [--page-size N] [--disable-radix-cache]
        [--max-cached-tokens N] [--tokenizer-path DIR] [--context-length N] [--served-model-name NAME]
        [--random-seed N] [--cpu-threads N] [--limit-mm-data-per-request '{"image": N}']

It is the reference SGLang is compared with when a model is added, and the embedded engine on machines
without a GPU. Endpoints (shapes from SGLang 0.5.17's http_server.py, see `hf_output` and `hf_openai`):
`/health`, `/health_generate` (both generate one token; 503 until the model is loaded), `/model_info` and
`/get_model_info`, `/server_info` and `/get_server_info`, `GET|POST /flush_cache` (400 while requests are
queued or running), `POST /generate` (single or batched, streaming as SGLang streams), and OpenAI's
`/v1/models`, `/v1/completions`, `/v1/chat/completions`.

Deviations from SGLang, on purpose:
- `/server_info` carries only the server args this engine has (model_path, tokenizer_path, host, port, device,
  dtype, page_size, disable_radix_cache, context_length, served_model_name, random_seed,
  enable_cache_report, limit_mm_data_per_request, logit_noise, logit_noise_seed), what it serves as SGLang names it
  (`tp_size`, `dp_size`, `pp_size`, `ep_size` 1, `speculative_algorithm` null), plus `engine: "hf-reference"`,
  `version` = "<harness>+transformers.<version>",
  `max_cached_tokens`, `prefix_cache` stats and `internal_states: [{}]`; SGLang lists all of its ServerArgs.
- `/health` always generates (SGLang's default, `SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION=1`); the probe
  stays out of the prefix cache (SGLang's is cached), so probes never create cache hits, and a running probe
  does not make `/flush_cache` answer 400.
- OpenAI `usage.prompt_tokens_details` is always `{"cached_tokens": n}` (plus `image_tokens` when the prompt
  has images, as SGLang adds it); SGLang gives cached_tokens only with `--enable-cache-report` and only when
  n > 0 (otherwise null).
- Requests run one sequence at a time on one worker thread (no padded batches), so results never depend on
  concurrency; throughput is correspondingly modest.
- `--cpu-threads` (not an SGLang flag) sets torch's CPU threads; by default 1 for models under 20 M
  parameters, where thread hand-offs cost more than they save.
- `--max-cached-tokens` (not an SGLang flag) bounds the prefix cache; SGLang's bound is its KV pool size.
- Parse errors, unknown fields and SGLang features this engine does not implement are HTTP 400 (see
  `hf_protocol`); SGLang ignores unknown top-level fields.
- Vision-language models (a checkpoint with preprocessor_config.json; first target Qwen3-VL) take images in
  `/generate` (`image_data`) and in chat `image_url` parts, and videos in `video_data` and `video_url` parts
  (decoded here with OpenCV, sampled by the checkpoint's video processor: `hf_video_input`); `/model_info` says
  `has_image_understanding: true`. http(s) URLs are a 400 (no network), and so is audio (see `hf_multimodal`).
- Prefix caching is switched off (reported in `/server_info` as `disable_radix_cache: true` with
  `radix_cache_disabled_reason`) for models whose transformers cache is not plain full attention
  (sliding-window or linear-attention layers), since their KV cannot be cut at an arbitrary prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import threading
from dataclasses import fields

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from hf_engine.engine import Engine, EngineNotReady, EngineOptions
from hf_engine.output import build_output
from hf_engine.protocol import RequestError, did_you_mean, parse_generate
from hf_engine.responses import error_response, json_response, read_json, sse

log = logging.getLogger("hf_server")


def create_app(engine: Engine) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load in the background so the port answers (503) while the weights load, as SGLang's does.
        def load():
            try:
                engine.load()
            except BaseException:
                # Exit like SGLang does when its model fails to load, so a launcher sees the crash at once
                # (with this traceback last in the log) instead of a server that never turns healthy.
                log.exception("loading %s failed; exiting", engine.options.model_path)
                logging.shutdown()
                os._exit(1)

        loader = threading.Thread(target=load, name="hf-engine-loader", daemon=True)
        loader.start()
        yield
        engine.shutdown()

    app = FastAPI(lifespan=lifespan)
    app.state.engine = engine

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, exc: RequestError):
        return error_response(str(exc), exc.status_code, openai=request.url.path.startswith("/v1/"))

    @app.exception_handler(EngineNotReady)
    async def on_not_ready(request: Request, exc: EngineNotReady):
        return error_response(str(exc), 503, openai=request.url.path.startswith("/v1/"))

    @app.get("/health")
    @app.get("/health_generate")
    async def health_generate():
        if not engine.ready:
            return Response(status_code=503)
        return Response(status_code=200 if await engine.health_generate() else 503)

    @app.get("/model_info")
    @app.get("/get_model_info")
    async def model_info():
        return json_response(engine.model_info())

    @app.get("/server_info")
    @app.get("/get_server_info")
    async def server_info():
        return json_response(engine.server_info())

    @app.api_route("/flush_cache", methods=["GET", "POST"])
    async def flush_cache():
        if await engine.flush_cache():
            return Response("Cache flushed.\n", status_code=200)
        return Response(
            "Cache not flushed: requests are running or waiting (the operation will not be performed).\n",
            status_code=400,
        )

    @app.api_route("/generate", methods=["POST", "PUT"])
    async def generate(request: Request):
        body = await read_json(request)
        runner = engine.require_ready()
        items, batched = parse_generate(body, runner.encode, engine.limits, runner.images)
        if items[0].stream:
            return StreamingResponse(_stream_generate(engine, items, batched), media_type="text/event-stream")
        seqs = await engine.generate(items)
        aborted = next((s.finish_reason for s in seqs if s.finish_reason.get("type") == "abort"), None)
        if aborted is not None:
            return error_response(aborted["message"], aborted.get("status_code") or 500)
        outputs = [build_output(seq, len(seq.output_ids), True, runner) for seq in seqs]
        return json_response(outputs if batched else outputs[0])

    from hf_engine.openai_api import register_openai_routes

    register_openai_routes(app, engine)
    return app


async def _stream_generate(engine: Engine, items, batched: bool):
    """SGLang's native stream: one `data: {...}` per update with cumulative text, ids and meta_info (plus
    `index` for a batch), an error chunk if a request aborts, then `data: [DONE]`."""
    async for index, seq, n_tokens, final in engine.stream(items):
        if final and seq.finish_reason.get("type") == "abort":
            error = {"message": seq.finish_reason["message"], "type": "internal_error", "code": 500}
            yield sse({"error": error})
            continue
        out = build_output(seq, n_tokens, final, engine.runner)
        if batched:
            out["index"] = index
        yield sse(out)
    yield b"data: [DONE]\n\n"


def parse_args(argv: list[str] | None = None) -> EngineOptions:
    parser = argparse.ArgumentParser(prog="python -m hf_engine", description=__doc__.split("\n")[0])
    parser.add_argument("--model-path", required=True, help="local transformers model directory or hub id")
    parser.add_argument("--tokenizer-path", default=None, help="defaults to --model-path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"])
    parser.add_argument("--page-size", type=int, default=1, help="prefix-cache page size in tokens")
    parser.add_argument("--disable-radix-cache", action="store_true", help="no prefix cache: cached_tokens is 0")
    parser.add_argument("--max-cached-tokens", type=int, default=None, help="bound of the prefix cache in tokens")
    parser.add_argument("--context-length", type=int, default=None, help="defaults to max_position_embeddings")
    parser.add_argument("--served-model-name", default=None, help="the model id of /v1/models")
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--cpu-threads", type=int, default=0, help="torch threads on CPU (0: 1 for tiny models)")
    parser.add_argument(
        "--limit-mm-data-per-request",
        type=_mm_limits,
        default=None,
        help="JSON, e.g. '{\"image\": 3}': refuse requests with more images (SGLang's flag)",
    )
    parser.add_argument("--enable-cache-report", action="store_true", default=True, help="SGLang parity; always on")
    parser.add_argument(
        "--logit-noise",
        type=float,
        default=0.0,
        metavar="BOUND",
        help="uniform noise in [-BOUND, BOUND] on every output token's logits, so greedy outputs vary "
        "from run to run as batched serving's do (runtime.LogitNoise); 0, the default: off",
    )
    parser.add_argument(
        "--logit-noise-seed", type=int, default=0, help="seed of --logit-noise (with each request's arrival number)"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    if args.device.split(":")[0] not in ("cpu", "cuda"):
        parser.error(f"--device: unknown device {args.device!r}; valid choices: cpu, cuda, cuda:N")
    if args.logit_noise < 0:
        parser.error(f"--logit-noise must be >= 0, got {args.logit_noise}")
    if args.page_size < 1:
        parser.error(f"--page-size must be >= 1, got {args.page_size}")
    if args.max_cached_tokens is not None and args.max_cached_tokens < 0:
        parser.error(f"--max-cached-tokens must be >= 0, got {args.max_cached_tokens}")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return EngineOptions(**{f.name: getattr(args, f.name) for f in fields(EngineOptions) if hasattr(args, f.name)})


def _mm_limits(value: str) -> dict:
    try:
        limits = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    counts = limits.values() if isinstance(limits, dict) else [None]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
        raise argparse.ArgumentTypeError(f'expected an object of counts such as {{"image": 3}}, got {value!r}')
    unknown = sorted(set(limits) - {"image", "video", "audio"})
    if unknown:
        choices = ("audio", "image", "video")
        raise argparse.ArgumentTypeError(
            f"unknown modality {unknown[0]!r}{did_you_mean(unknown[0], choices)}; valid choices: {', '.join(choices)}"
        )
    return limits


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    options = parse_args(argv)
    app = create_app(Engine(options))
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
