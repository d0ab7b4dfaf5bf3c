"""SGLang-shaped HTTP responses: JSON bodies, error bodies (native and OpenAI), SSE frames, request JSON."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from hf_engine.errors import RequestError


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status_code, media_type="application/json"
    )


def error_response(message: str, status_code: int = 400, openai: bool = False) -> Response:
    """SGLang's error bodies: native `{"error": {"message"}}`, OpenAI routes `ErrorResponse`."""
    if openai:
        err_type = "BadRequestError" if status_code == 400 else HTTPStatus(status_code).phrase
        body = {"object": "error", "message": message, "type": err_type, "param": None, "code": status_code}
        return json_response(body, status_code)
    return json_response({"error": {"message": message}}, status_code)


async def read_json(request: Request) -> Any:
    body = await request.body()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None


def sse(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
