"""Shared by the HF engine's subprocess tests: HTTP helpers, the tiny model, engines through `Server`, a reference.

The fixtures are imported by name into each test module (module scope: each module starts its own engines).
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request

import pytest

from harness.config.spec import ServerSpec
from harness.serve.engines import get_engine
from harness.serve.server import LifecycleOptions, Server

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

LIFECYCLE = LifecycleOptions(grace_period=15.0, poll_interval=0.2)
VOCAB_LOW, VOCAB_HIGH = 10, 390  # ordinary ids of the tiny tokenizer (vocab 394; 0-7 are special)
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes through a proxy


# -- HTTP helpers ------------------------------------------------------------------------------------------


def request(method: str, url: str, body=None, raw: bytes | None = None, timeout: float = 120):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with HTTP.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def get(url):
    return request("GET", url)


def post(url, body=None, raw=None):
    status, payload = request("POST", url, body, raw)
    return status, (json.loads(payload) if payload.startswith((b"{", b"[")) else payload.decode())


def generate(server, **body):
    status, out = post(server.base_url + "/generate", body)
    assert status == 200, out
    return out


def flush(server):
    status, text = post(server.base_url + "/flush_cache")
    assert status == 200, text


def stream(url: str, body: dict) -> list:
    """SSE `data:` payloads of a streaming POST, `[DONE]` included as the string."""
    status, raw = request("POST", url, body)
    assert status == 200, raw
    events = [line[len(b"data: ") :] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    return [e.decode() if e == b"[DONE]" else json.loads(e) for e in events]


def random_ids(n: int, seed: int, first: int | None = None) -> list[int]:
    rng = random.Random(seed)
    ids = [rng.randrange(VOCAB_LOW, VOCAB_HIGH) for _ in range(n)]
    if first is not None:
        ids[0] = first
    return ids


def output_logprobs(out) -> list[float]:
    return [entry[0] for entry in out["meta_info"]["output_token_logprobs"]]


def max_abs_diff(a, b) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from canary.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen2"))


def engine_server(model_dir, log_dir, *flags: str, env: dict[str, str] | None = None) -> Server:
    """The HF engine through the harness's one `Server` lifecycle (own process group, killed and reaped)."""
    config = "_".join([flag.lstrip("-") for flag in flags] + sorted(env or {})) or "default"
    spec = ServerSpec(
        model="tiny-qwen2", config=config, model_path=str(model_dir), engine="hf", args=flags, env=env or {}
    )
    return Server(spec, get_engine(spec.engine), log_dir=log_dir, options=LIFECYCLE)


@pytest.fixture(scope="module")
def servers(model_dir, tmp_path_factory):
    """Engines by flags and environment, started on first use and shared by the module; all stopped at the end."""
    started: dict[tuple, Server] = {}
    logs = tmp_path_factory.mktemp("engine_logs")

    def start(*flags: str, env: dict[str, str] | None = None) -> Server:
        key = (flags, tuple(sorted((env or {}).items())))
        if key not in started:
            server = engine_server(model_dir, logs, *flags, env=env)
            server.start()  # on failure it stops itself and raises with the log tail
            started[key] = server
        return started[key]

    try:
        yield start
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def server(servers):
    return servers("--page-size", "1")


@pytest.fixture(scope="module")
def reference(model_dir):
    """The same weights in this process, for logprobs computed without any cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def full_sequence_logprobs(model, ids: list[int]) -> list[float]:
    """log p(ids[i] | ids[:i]) for i >= 1 from one cache-free forward."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    rows = torch.log_softmax(logits[:-1], dim=-1)
    return rows.gather(1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()
