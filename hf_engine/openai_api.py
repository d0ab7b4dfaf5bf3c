"""OpenAI-compatible routes of the HF reference engine: `/v1/models`, `/v1/completions`, `/v1/chat/completions`.

As in SGLang 0.5.17 (python/sglang/srt/entrypoints/openai/serving_completions.py, serving_chat.py,
protocol.py, utils.py::to_openai_style_logprobs), each request is adapted into a native `/generate` body and
its results are reshaped:
- completions: `logprobs: k` -> `return_logprob` with `top_logprobs_num=k` and texts; `echo` with logprobs
  asks for the prompt's logprobs from position 0 (`logprob_start_len=0`, which bypasses the prefix cache as in
  SGLang); `text_offset` is -1 per token as SGLang leaves it; `max_tokens` defaults to 16;
- chat: the tokenizer's chat template with the generation prompt; `logprobs` / `top_logprobs` give
  `choices[].logprobs.content[]` with `token`, `bytes`, `logprob`, `top_logprobs`; the sampling defaults
  come from the model's generation_config when the request leaves them out; `image_url` parts (a data URL,
  file:// URL or local path) go to the template as `{"type": "image"}` and their images to the native request's
  `image_data`, in order, as SGLang's serving_chat does; `video_url` parts likewise as `{"type": "video"}` and
  `video_data` (VLMs only; audio parts are a 400);
- `usage` = prompt/completion/total tokens, `reasoning_tokens: 0` and `prompt_tokens_details.cached_tokens`
  (always present here; see the deviation list in `server`), plus `image_tokens` / `video_tokens` when the prompt has
  them;
- streams: `data: {...}` chunks with text deltas, a finish chunk, a usage chunk when
  `stream_options.include_usage`, then `data: [DONE]`.
Only `n: 1` is supported; errors use SGLang's OpenAI `ErrorResponse` body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from jinja2 import TemplateError

from hf_engine.image_refs import split_chat_images
from hf_engine.openai_shapes import ChatShaper, CompletionShaper
from hf_engine.protocol import RequestError, as_bool, as_int, did_you_mean, parse_generate
from hf_engine.responses import error_response, json_response, read_json, sse

_COMMON_FIELDS = {
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "stop",
    "stop_token_ids",
    "ignore_eos",
    "skip_special_tokens",
    "no_stop_trim",
    "stream",
    "stream_options",
    "seed",
    "n",
    "user",
    "rid",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "logit_bias",
    "min_tokens",
    "regex",
    "json_schema",
    "ebnf",
    "stop_regex",
}
_COMPLETION_FIELDS = _COMMON_FIELDS | {"prompt", "echo", "logprobs", "best_of", "suffix"}
_CHAT_FIELDS = _COMMON_FIELDS | {
    "messages",
    "logprobs",
    "top_logprobs",
    "max_completion_tokens",
    "chat_template_kwargs",
    "tools",
    "tool_choice",
    "response_format",
    "parallel_tool_calls",
}
# OpenAI fields that only pass when unset: the features behind them are not implemented here.
_MUST_BE_UNSET = {"tools", "tool_choice", "response_format", "suffix", "parallel_tool_calls"}
_SAMPLING_FROM_REQUEST = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "stop": "stop",
    "stop_token_ids": "stop_token_ids",
    "ignore_eos": "ignore_eos",
    "skip_special_tokens": "skip_special_tokens",
    "no_stop_trim": "no_stop_trim",
    "seed": "sampling_seed",
    "n": "n",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "repetition_penalty": "repetition_penalty",
    "logit_bias": "logit_bias",
    "min_tokens": "min_new_tokens",
    "regex": "regex",
    "json_schema": "json_schema",
    "ebnf": "ebnf",
    "stop_regex": "stop_regex",
}


def register_openai_routes(app: FastAPI, engine) -> None:
    async def respond(shaper, items, stream: bool):
        if stream:
            return StreamingResponse(shaper.stream(engine, sse), media_type="text/event-stream")
        seqs = await engine.generate(items)
        aborted = next((s.finish_reason for s in seqs if s.finish_reason.get("type") == "abort"), None)
        if aborted is not None:
            return error_response(aborted["message"], aborted.get("status_code") or 500, openai=True)
        return json_response(shaper.response(seqs))

    @app.get("/v1/models")
    async def models():
        runner = engine.require_ready()
        card = {
            "id": engine.served_model_name,
            "object": "model",
            "created": int(engine.started),
            "owned_by": "sglang",
            "root": engine.options.model_path,
            "parent": None,
            "max_model_len": runner.context_length,
        }
        return json_response({"object": "list", "data": [card]})

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = await read_json(request)
        _check_fields(req, _COMPLETION_FIELDS, "completion request")
        runner = engine.require_ready()
        body = _native_body(req, default_max_tokens=16)
        prompt = req.get("prompt")
        if prompt in (None, "", []):
            raise RequestError("prompt: Prompt cannot be empty")
        if isinstance(prompt, str) or (isinstance(prompt, list) and isinstance(prompt[0], str)):
            body["text"] = prompt
        else:
            body["input_ids"] = prompt
        logprobs = req.get("logprobs")
        echo = as_bool(req.get("echo", False), "echo")
        if logprobs is not None:
            body.update(
                return_logprob=True, top_logprobs_num=as_int(logprobs, "logprobs"), return_text_in_logprobs=True
            )
            body["logprob_start_len"] = 0 if echo else -1
        items, _ = parse_generate(body, runner.encode, engine.limits)
        return await respond(CompletionShaper(req, items, runner, echo), items, body["stream"])

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = await read_json(request)
        _check_fields(req, _CHAT_FIELDS, "chat completion request")
        runner = engine.require_ready()
        messages = req.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and "role" in m for m in messages)
        ):
            raise RequestError("messages: expected a non-empty list of {role, content} objects")
        template_kwargs = req.get("chat_template_kwargs") or {}
        messages, images, videos = split_chat_images(messages)
        if (images or videos) and runner.images is None:
            first = (images or videos)[0]
            raise RequestError(
                f"{first.where}: {'image' if images else 'video'} parts need a vision-language model; "
                f"{engine.options.model_path} has no image processor"
            )
        if videos and runner.images.video_processor is None:
            raise RequestError(
                f"{videos[0].where}: video parts need a video processor; {engine.options.model_path} "
                "has none this engine can run"
            )
        try:
            prompt_ids = runner.encode_chat(messages, template_kwargs)
        except (TemplateError, ValueError, TypeError, KeyError) as exc:  # the template rejects these messages
            raise RequestError(f"messages: the chat template failed: {type(exc).__name__}: {exc}") from None
        max_tokens = req.get("max_completion_tokens", req.get("max_tokens"))
        body = _native_body(
            {**req, "max_tokens": max_tokens}, default_max_tokens=None, defaults=_generation_defaults(runner)
        )
        body["input_ids"] = prompt_ids
        if images:
            body["image_data"] = images
        if videos:
            body["video_data"] = videos
        if as_bool(req.get("logprobs", False), "logprobs"):
            top = req.get("top_logprobs")
            body.update(return_logprob=True, return_text_in_logprobs=True, logprob_start_len=-1)
            body["top_logprobs_num"] = 0 if top is None else as_int(top, "top_logprobs")
        items, _ = parse_generate(body, runner.encode, engine.limits, runner.images)
        return await respond(ChatShaper(req, items, runner), items, body["stream"])


def _check_fields(req: Any, known: set[str], what: str) -> None:
    if not isinstance(req, dict):
        raise RequestError(f"{what}: the body must be a JSON object")
    for key, value in req.items():
        if key not in known:
            raise RequestError(f"{what}: unknown field {key!r}{did_you_mean(key, known)}")
        if key in _MUST_BE_UNSET and value not in (None, [], {}, ""):
            raise RequestError(f"{key}: not supported by the HF reference engine")
    if req.get("best_of") not in (None, 1):
        raise RequestError("best_of: only 1 is supported by the HF reference engine")


def _generation_defaults(runner) -> dict[str, Any]:
    """Sampling defaults from the model's generation_config (SGLang: user value > generation_config > OpenAI)."""
    config = getattr(runner.model, "generation_config", None)
    diff = config.to_diff_dict() if config is not None else {}
    return {k: diff[k] for k in ("temperature", "top_p", "top_k", "min_p") if diff.get(k) is not None}


def _native_body(req: dict, default_max_tokens: int | None, defaults: dict | None = None) -> dict:
    sampling = {}
    for field, name in _SAMPLING_FROM_REQUEST.items():
        value = req.get(field, (defaults or {}).get(field))
        if value is not None:
            sampling[name] = value
    max_tokens = req.get("max_tokens", default_max_tokens)
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0):
        raise RequestError(f"max_tokens must be positive, got {max_tokens!r}")
    sampling["max_new_tokens"] = max_tokens
    options = req.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("stream_options: expected an object")
    body = {"sampling_params": sampling, "stream": as_bool(req.get("stream", False), "stream")}
    if req.get("rid") is not None:
        body["rid"] = req["rid"]
    return body
