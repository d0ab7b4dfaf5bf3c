"""The HF reference engine's prefix cache over HTTP, at page sizes 1 and 16, against the numbers a real SGLang
0.5.17 answered on GPU (shared/research/sglang-on-gpu.md): page-aligned repeats with equal logprobs, flush,
branches, prefill-only warm-up, decode continuation, the logprob_start_len=0 bypass, --disable-radix-cache, and
flush refused while a request runs.
"""

from __future__ import annotations

import json
import time
import urllib.request

import hf_engine_support as support
import pytest
from hf_engine_support import (
    HTTP,
    VOCAB_LOW,
    flush,
    generate,
    get,
    max_abs_diff,
    output_logprobs,
    post,
    random_ids,
)

# Module-scoped fixtures shared with the other HF engine module (each module starts its own engines).
model_dir = support.model_dir
server = support.server
servers = support.servers


@pytest.fixture(scope="module", params=[1, 16], ids=["page1", "page16"])
def paged(request, servers):
    return request.param, servers("--page-size", str(request.param))


def test_repeated_prompt_hits_the_page_aligned_prefix_with_equal_logprobs(paged):
    page, server = paged
    flush(server)
    body = {
        "input_ids": random_ids(200, seed=3),
        "return_logprob": True,
        "sampling_params": {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True},
    }
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
    turn1 = generate(
        server, input_ids=prompt, sampling_params={"max_new_tokens": 32, "temperature": 0, "ignore_eos": True}
    )
    follow_up = prompt + turn1["output_ids"] + [VOCAB_LOW]
    body = {
        "input_ids": follow_up,
        "return_logprob": True,
        "sampling_params": {"max_new_tokens": 8, "temperature": 0, "ignore_eos": True},
    }
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
    bypass = generate(
        server, input_ids=ids, return_logprob=True, logprob_start_len=0, sampling_params={"max_new_tokens": 1}
    )
    assert bypass["meta_info"]["cached_tokens"] == 0
    assert len(bypass["meta_info"]["input_token_logprobs"]) == 120
    capped = generate(
        server, input_ids=ids, return_logprob=True, logprob_start_len=50, sampling_params={"max_new_tokens": 1}
    )
    assert capped["meta_info"]["cached_tokens"] == 50  # the match stops where input logprobs start
    default = generate(server, input_ids=ids, return_logprob=True, sampling_params={"max_new_tokens": 1})
    assert default["meta_info"]["cached_tokens"] == 119 and default["meta_info"]["input_token_logprobs"] == []


def test_disabled_radix_cache_never_hits(servers):
    server = servers("--disable-radix-cache")
    info = json.loads(get(server.base_url + "/server_info")[1])
    assert info["disable_radix_cache"] is True
    ids = random_ids(64, seed=8)
    for _ in range(2):
        assert generate(server, input_ids=ids, sampling_params={"max_new_tokens": 2})["meta_info"]["cached_tokens"] == 0


def test_flush_is_refused_while_a_request_runs(server):
    body = {
        "input_ids": random_ids(16, seed=9),
        "stream": True,
        "sampling_params": {"max_new_tokens": 3000, "temperature": 0, "ignore_eos": True},
    }
    req = urllib.request.Request(server.base_url + "/generate", data=json.dumps(body).encode(), method="POST")
    with HTTP.open(req, timeout=60) as resp:
        assert resp.readline().startswith(b"data: ")  # the request is running now
        status, text = post(server.base_url + "/flush_cache")
        assert status == 400 and "not" in text
    # The client went away: the engine drops the request and the flush goes through again.
    deadline = time.monotonic() + 60
    while post(server.base_url + "/flush_cache")[0] != 200:
        assert time.monotonic() < deadline, "the abandoned stream kept the engine busy"
        time.sleep(0.1)
