"""The HF reference engine as a real subprocess on a tiny random Qwen2 built offline: API shapes, logprobs
checked against a plain transformers forward, SGLang's prefix-cache numbers at page sizes 1 and 16, OpenAI
routes, bad input, concurrency.

The expected cache numbers are what a real SGLang 0.5.17 answered on GPU (shared/research/sglang-on-gpu.md).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 180.0
VOCAB_LOW, VOCAB_HIGH = 10, 390  # ordinary ids of the tiny tokenizer (vocab 394; 0-7 are special)


# -- a server process -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EngineProcess:
    """`python -m harness.engines.hf_server` in its own process group; `close()` kills and reaps it."""

    def __init__(self, model_dir: Path, log_path: Path, *flags: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "harness.engines.hf_server", "--model-path", str(model_dir),
               "--host", "127.0.0.1", "--port", str(self.port), *flags]  # fmt: skip
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if get(self.url + "/health_generate")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"engine not healthy after {STARTUP_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 50) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=15)
        finally:
            self._log.close()


def request(method: str, url: str, body=None, raw: bytes | None = None, timeout: float = 120):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def get(url):
    return request("GET", url)


def post(url, body=None, raw=None):
    status, payload = request("POST", url, body, raw)
    return status, (json.loads(payload) if payload.startswith((b"{", b"[")) else payload.decode())


def generate(server, **body):
    status, out = post(server.url + "/generate", body)
    assert status == 200, out
    return out


def flush(server):
    status, text = post(server.url + "/flush_cache")
    assert status == 200, text


def stream(url: str, body: dict) -> list:
    """SSE `data:` payloads of a streaming POST, `[DONE]` included as the string."""
    status, raw = request("POST", url, body)
    assert status == 200, raw
    events = [line[len(b"data: "):] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
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
    from harness.canary.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen2"))


@pytest.fixture(scope="module")
def servers(model_dir, tmp_path_factory):
    """Engines by flag set, started on first use and shared by the module; all killed and reaped at the end."""
    started: dict[tuple[str, ...], EngineProcess] = {}
    logs = tmp_path_factory.mktemp("engine_logs")

    def start(*flags: str) -> EngineProcess:
        if flags not in started:
            proc = EngineProcess(model_dir, logs / f"engine{len(started)}.log", *flags)
            started[flags] = proc
            proc.wait_ready()
        return started[flags]

    try:
        yield start
    finally:
        for proc in started.values():
            proc.close()


@pytest.fixture(scope="module")
def server(servers):
    return servers("--page-size", "1")


@pytest.fixture(scope="module", params=[1, 16], ids=["page1", "page16"])
def paged(request, servers):
    return request.param, servers("--page-size", str(request.param))


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


# -- endpoints and shapes ---------------------------------------------------------------------------------


def test_health_model_and_server_info(server, model_dir):
    assert get(server.url + "/health")[0] == 200
    assert get(server.url + "/health_generate")[0] == 200
    for path in ("/model_info", "/get_model_info"):
        status, raw = get(server.url + path)
        info = json.loads(raw)
        assert status == 200 and info["model_path"] == str(model_dir)
        assert info["is_generation"] is True and info["model_type"] == "qwen2"
        assert info["architectures"] == ["Qwen2ForCausalLM"] and info["tokenizer_path"] == str(model_dir)
    infos = [json.loads(get(server.url + p)[1]) for p in ("/server_info", "/get_server_info")]
    for info in infos:
        assert info["engine"] == "hf-reference" and "+transformers." in info["version"]
        assert info["page_size"] == 1 and info["disable_radix_cache"] is False
        assert info["model_path"] == str(model_dir) and info["dtype"] == "float32" and info["device"] == "cpu"
        assert info["internal_states"] == [{}] and info["max_cached_tokens"] > 0


def test_text_and_input_ids_give_the_same_greedy_answer(server, reference):
    _, tokenizer = reference
    text = "alice gives away 3 apples"
    ids = tokenizer.encode(text)
    params = {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}
    by_text = generate(server, text=text, sampling_params=params)
    by_ids = generate(server, input_ids=ids, sampling_params=params)
    assert by_text["output_ids"] == by_ids["output_ids"] and len(by_text["output_ids"]) == 6
    assert by_text["text"] == tokenizer.decode(by_text["output_ids"], skip_special_tokens=True)
    meta = by_text["meta_info"]
    assert meta["prompt_tokens"] == len(ids) and meta["completion_tokens"] == 6
    assert meta["finish_reason"] == {"type": "length", "length": 6}
    assert meta["e2e_latency"] > 0 and len(meta["id"]) == 32
    assert "output_token_logprobs" not in meta  # only with return_logprob, as in SGLang


def test_batch_matches_single_requests(server):
    texts = ["the cat has", "how many pens does bob", "carol buys 12"]
    params = {"max_new_tokens": 5, "temperature": 0, "ignore_eos": True}
    batch = generate(server, text=texts, sampling_params=params, rid=["r0", "r1", "r2"])
    assert [item["meta_info"]["id"] for item in batch] == ["r0", "r1", "r2"]
    for text, item in zip(texts, batch):
        assert generate(server, text=text, sampling_params=params)["output_ids"] == item["output_ids"]
    ids_batch = generate(server, input_ids=[[11, 12, 13], [14, 15]], sampling_params=[params, {**params, "max_new_tokens": 2}])
    assert [len(item["output_ids"]) for item in ids_batch] == [5, 2]


def test_streaming_is_cumulative_and_ends_like_the_plain_answer(server):
    body = {"text": "dave sells each box", "sampling_params": {"max_new_tokens": 7, "temperature": 0, "ignore_eos": True}}
    plain = generate(server, **body)
    events = stream(server.url + "/generate", {**body, "stream": True})
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert [len(c["output_ids"]) for c in chunks] == list(range(1, 8))
    for earlier, later in zip(chunks, chunks[1:]):
        assert later["output_ids"][: len(earlier["output_ids"])] == earlier["output_ids"]
        assert earlier["meta_info"]["finish_reason"] is None
    last = chunks[-1]
    assert last["text"] == plain["text"] and last["output_ids"] == plain["output_ids"]
    assert last["meta_info"]["finish_reason"] == {"type": "length", "length": 7}
    assert last["meta_info"]["completion_tokens"] == 7 and "cached_tokens" in last["meta_info"]
    batch = stream(server.url + "/generate", {"text": ["a", "b"], "stream": True, "sampling_params": body["sampling_params"]})
    assert {c["index"] for c in batch[:-1]} == {0, 1}


def test_prompt_and_output_logprobs_match_a_plain_forward(server, reference):
    model, _ = reference
    flush(server)
    ids = random_ids(40, seed=1)
    out = generate(server, input_ids=ids, return_logprob=True, logprob_start_len=0, top_logprobs_num=3,
                   return_text_in_logprobs=True, sampling_params={"max_new_tokens": 8, "temperature": 0, "ignore_eos": True})  # fmt: skip
    meta = out["meta_info"]
    inputs, outputs = meta["input_token_logprobs"], meta["output_token_logprobs"]
    assert len(inputs) == len(ids) and inputs[0][0] is None and [e[1] for e in inputs] == ids
    assert [e[1] for e in outputs] == out["output_ids"] and meta["output_token_logprobs_length"] == 8
    assert all(isinstance(e[2], str) for e in inputs + outputs)
    assert meta["input_top_logprobs"][0] is None and len(meta["input_top_logprobs"]) == len(ids)
    for entry, top in zip(outputs, meta["output_top_logprobs"]):
        assert len(top) == 3 and top[0][1] == entry[1]  # greedy picks the top-1 token
        assert top[0][0] >= top[1][0] >= top[2][0]
    expected = full_sequence_logprobs(model, ids + out["output_ids"])
    served = [e[0] for e in inputs[1:]] + output_logprobs(out)
    assert max_abs_diff(served, expected) < 1e-4
    partial = generate(server, input_ids=ids, return_logprob=True, logprob_start_len=30, sampling_params={"max_new_tokens": 1})
    assert [e[1] for e in partial["meta_info"]["input_token_logprobs"]] == ids[30:]
    assert partial["meta_info"]["input_token_logprobs"][0][0] is None


def test_sampled_logprobs_are_temperature_scaled_and_seeded_sampling_repeats(server, reference):
    model, _ = reference
    ids = random_ids(20, seed=2)
    body = {"input_ids": ids, "return_logprob": True,
            "sampling_params": {"max_new_tokens": 5, "temperature": 0.7, "sampling_seed": 42, "ignore_eos": True}}  # fmt: skip
    first, again = generate(server, **body), generate(server, **body)
    assert first["output_ids"] == again["output_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    expected = torch.log_softmax(logits / 0.7, dim=-1)[first["output_ids"][0]].item()
    assert abs(output_logprobs(first)[0] - expected) < 1e-4


def test_stop_string_and_stop_token(server):
    params = {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}
    base = generate(server, text="bob has more cups", sampling_params=params)
    ids, text = base["output_ids"], base["text"]
    stop_id = ids[3]
    by_token = generate(server, text="bob has more cups", sampling_params={**params, "ignore_eos": False, "stop_token_ids": [stop_id]})
    cut = ids.index(stop_id) + 1
    assert by_token["output_ids"] == ids[:cut]
    assert by_token["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop_id}
    stop = text.strip()[-2:] if text.strip() else None
    if stop:
        by_string = generate(server, text="bob has more cups", sampling_params={**params, "stop": [stop]})
        assert by_string["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
        assert stop not in by_string["text"] and text.startswith(by_string["text"])


# -- prefix cache -----------------------------------------------------------------------------------------


def test_repeated_prompt_hits_the_page_aligned_prefix_with_equal_logprobs(paged):
    page, server = paged
    flush(server)
    body = {"input_ids": random_ids(200, seed=3), "return_logprob": True,
            "sampling_params": {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}}  # fmt: skip
    cold, warm = generate(server, **body), generate(server, **body)
    assert cold["meta_info"]["cached_tokens"] == 0
    assert warm["meta_info"]["cached_tokens"] == {1: 199, 16: 192}[page]
    assert warm["output_ids"] == cold["output_ids"]
    assert max_abs_diff(output_logprobs(warm), output_logprobs(cold)) < 1e-5
    flush(server)
    assert generate(server, **body)["meta_info"]["cached_tokens"] == 0


@pytest.mark.parametrize("prefix_len", [257, 100])
def test_branches_hit_their_shared_prefix(paged, prefix_len):
    page, server = paged
    flush(server)
    prefix = random_ids(prefix_len, seed=4)
    cached = []
    for branch in range(3):
        suffix = random_ids(64, seed=100 + branch, first=VOCAB_LOW + branch)  # suffixes differ at their 1st id
        out = generate(server, input_ids=prefix + suffix, sampling_params={"max_new_tokens": 1})
        cached.append(out["meta_info"]["cached_tokens"])
    aligned = prefix_len // page * page
    assert cached == [0, aligned, aligned]


def test_prefill_only_request_warms_the_cache(paged):
    page, server = paged
    flush(server)
    ids = random_ids(300, seed=5)
    warmup = generate(server, input_ids=ids, sampling_params={"max_new_tokens": 0})
    assert warmup["output_ids"] == [] and warmup["meta_info"]["completion_tokens"] == 0
    assert warmup["meta_info"]["finish_reason"] == {"type": "length", "length": 0}
    hit = generate(server, input_ids=ids, sampling_params={"max_new_tokens": 4})
    assert hit["meta_info"]["cached_tokens"] == {1: 299, 16: 288}[page]


def test_generated_tokens_are_cached_for_the_next_turn(paged):
    page, server = paged
    flush(server)
    prompt = random_ids(300, seed=6)
    turn1 = generate(server, input_ids=prompt, sampling_params={"max_new_tokens": 32, "temperature": 0, "ignore_eos": True})
    follow_up = prompt + turn1["output_ids"] + [VOCAB_LOW]
    body = {"input_ids": follow_up, "return_logprob": True,
            "sampling_params": {"max_new_tokens": 8, "temperature": 0, "ignore_eos": True}}  # fmt: skip
    turn2 = generate(server, **body)
    assert turn2["meta_info"]["cached_tokens"] == {1: 332, 16: 320}[page]
    flush(server)
    cold = generate(server, **body)
    assert cold["meta_info"]["cached_tokens"] == 0 and cold["output_ids"] == turn2["output_ids"]
    assert max_abs_diff(output_logprobs(turn2), output_logprobs(cold)) < 1e-5


def test_input_logprobs_from_position_zero_bypass_the_cache(server):
    flush(server)
    ids = random_ids(120, seed=7)
    generate(server, input_ids=ids, sampling_params={"max_new_tokens": 1})
    bypass = generate(server, input_ids=ids, return_logprob=True, logprob_start_len=0, sampling_params={"max_new_tokens": 1})
    assert bypass["meta_info"]["cached_tokens"] == 0
    assert len(bypass["meta_info"]["input_token_logprobs"]) == 120
    capped = generate(server, input_ids=ids, return_logprob=True, logprob_start_len=50, sampling_params={"max_new_tokens": 1})
    assert capped["meta_info"]["cached_tokens"] == 50  # the match stops where input logprobs start
    default = generate(server, input_ids=ids, return_logprob=True, sampling_params={"max_new_tokens": 1})
    assert default["meta_info"]["cached_tokens"] == 119 and default["meta_info"]["input_token_logprobs"] == []


def test_disabled_radix_cache_never_hits(servers):
    server = servers("--disable-radix-cache")
    info = json.loads(get(server.url + "/server_info")[1])
    assert info["disable_radix_cache"] is True
    ids = random_ids(64, seed=8)
    for _ in range(2):
        assert generate(server, input_ids=ids, sampling_params={"max_new_tokens": 2})["meta_info"]["cached_tokens"] == 0


def test_flush_is_refused_while_a_request_runs(server):
    body = {"input_ids": random_ids(16, seed=9), "stream": True,
            "sampling_params": {"max_new_tokens": 3000, "temperature": 0, "ignore_eos": True}}  # fmt: skip
    req = urllib.request.Request(server.url + "/generate", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.readline().startswith(b"data: ")  # the request is running now
        status, text = post(server.url + "/flush_cache")
        assert status == 400 and "not" in text
    # The client went away: the engine drops the request and the flush goes through again.
    deadline = time.monotonic() + 60
    while post(server.url + "/flush_cache")[0] != 200:
        assert time.monotonic() < deadline, "the abandoned stream kept the engine busy"
        time.sleep(0.1)


# -- OpenAI-compatible routes ------------------------------------------------------------------------------


def test_openai_models_and_completions(server, model_dir):
    status, raw = get(server.url + "/v1/models")
    assert status == 200 and json.loads(raw)["data"][0]["id"] == str(model_dir)
    flush(server)
    body = {"model": "tiny", "prompt": "eve gets 5 pens and", "max_tokens": 6, "temperature": 0, "logprobs": 2}
    status, first = post(server.url + "/v1/completions", body)
    assert status == 200 and first["object"] == "text_completion" and first["model"] == "tiny"
    choice = first["choices"][0]
    assert choice["finish_reason"] in ("length", "stop") and len(choice["logprobs"]["token_logprobs"]) == first["usage"]["completion_tokens"]
    assert all(len(top) <= 2 for top in choice["logprobs"]["top_logprobs"])
    assert first["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    _, second = post(server.url + "/v1/completions", body)
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == second["usage"]["prompt_tokens"] - 1
    assert second["choices"][0]["text"] == choice["text"]
    _, echoed = post(server.url + "/v1/completions", {**body, "echo": True})
    assert echoed["choices"][0]["text"] == body["prompt"] + choice["text"]
    assert echoed["choices"][0]["logprobs"]["token_logprobs"][0] is None
    events = stream(server.url + "/v1/completions", {**body, "stream": True, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == first["usage"]["completion_tokens"]
    assert "".join(e["choices"][0]["text"] for e in events[:-2]) == choice["text"]


def test_openai_chat_uses_the_chat_template(server, reference):
    _, tokenizer = reference
    flush(server)
    messages = [{"role": "user", "content": "how many apples does alice have"}]
    template_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_len = len(tokenizer.encode(template_ids, add_special_tokens=False))
    body = {"messages": messages, "max_tokens": 5, "temperature": 0, "logprobs": True, "top_logprobs": 2}
    status, first = post(server.url + "/v1/chat/completions", body)
    assert status == 200 and first["object"] == "chat.completion"
    assert first["usage"]["prompt_tokens"] == prompt_len
    message, logprobs = first["choices"][0]["message"], first["choices"][0]["logprobs"]["content"]
    assert message["role"] == "assistant" and len(logprobs) == first["usage"]["completion_tokens"]
    assert all(len(entry["top_logprobs"]) == 2 and entry["bytes"] == list(entry["token"].encode()) for entry in logprobs)
    _, second = post(server.url + "/v1/chat/completions", body)
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == prompt_len - 1
    events = stream(server.url + "/v1/chat/completions", {**body, "stream": True})
    assert events[0]["choices"][0]["delta"]["role"] == "assistant" and events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == message["content"]
    assert events[-2]["choices"][0]["finish_reason"] == first["choices"][0]["finish_reason"]


# -- bad input and concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, raw, needle",
    [
        ("/generate", b"{not json", "not valid JSON"),
        ("/generate", b'{"sampling_params": {}}', "text or input_ids"),
        ("/generate", b'{"text": 5}', "text"),
        ("/generate", b'{"input_ids": [1, "x"]}', "input_ids"),
        ("/generate", b'{"input_ids": [1, 99999]}', "outside the vocabulary"),
        ("/generate", b'{"text": "a", "sampling_params": {"max_new_token": 3}}', "did you mean 'max_new_tokens'"),
        ("/generate", b'{"text": "a", "sampling_params": {"temperature": "hot"}}', "temperature"),
        ("/generate", b'{"text": "a", "sampling_params": {"max_new_tokens": -1}}', "max_new_tokens"),
        ("/generate", b'{"text": "a", "return_logprobs": true}', "did you mean 'return_logprob'"),
        ("/generate", b'{"text": "a", "image_data": "x.png"}', "not supported"),
        ("/generate", b'[1, 2]', "JSON object"),
        ("/v1/completions", b'{"prompt": "a", "max_tokens": 0}', "max_tokens"),
        ("/v1/completions", b'{"prompt": ""}', "empty"),
        ("/v1/chat/completions", b'{"messages": "hi"}', "messages"),
    ],
)
def test_malformed_requests_get_400_and_the_server_stays_up(server, path, raw, needle):
    status, body = post(server.url + path, raw=raw)
    assert status == 400
    message = body["error"]["message"] if "error" in body else body["message"]
    assert needle in message
    assert get(server.url + "/health_generate")[0] == 200


def test_concurrent_requests_equal_sequential_ones(server):
    bodies = []
    for i in range(16):
        params = {"max_new_tokens": 8 + i % 5, "ignore_eos": True}
        params.update({"temperature": 0} if i % 2 else {"temperature": 0.9, "sampling_seed": i})
        # Distinct first ids: no request can hit another's cached prefix, in either order.
        bodies.append({"input_ids": random_ids(30 + i, seed=50 + i, first=VOCAB_LOW + i), "return_logprob": True, "sampling_params": params})

    def run(body):
        return generate(server, **body)

    flush(server)
    sequential = [run(body) for body in bodies]
    flush(server)
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, bodies))
    for one, other in zip(sequential, concurrent):
        assert one["output_ids"] == other["output_ids"]
        assert output_logprobs(one) == output_logprobs(other)
