"""The HF reference engine as a real subprocess on a tiny random Qwen2 built offline: endpoints and SGLang's
field shapes, text and ids, batches, streaming, logprobs checked against a plain transformers forward, stop
strings and tokens, OpenAI routes, bad input, concurrency. The prefix cache has its own module
(test_hf_server_cache.py).
"""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor

import hf_engine_support as support
import pytest
from hf_engine_support import (
    VOCAB_LOW,
    engine_server,
    flush,
    full_sequence_logprobs,
    generate,
    get,
    max_abs_diff,
    output_logprobs,
    post,
    random_ids,
    stream,
    torch,
)

from harness.serve.server import ServerStartError

# Module-scoped fixtures shared with the other HF engine module (each module starts its own engines).
model_dir = support.model_dir
reference = support.reference
server = support.server
servers = support.servers


# -- endpoints and shapes ---------------------------------------------------------------------------------


def test_health_model_and_server_info(server, model_dir):
    assert get(server.base_url + "/health")[0] == 200
    assert get(server.base_url + "/health_generate")[0] == 200
    for path in ("/model_info", "/get_model_info"):
        status, raw = get(server.base_url + path)
        info = json.loads(raw)
        assert status == 200 and info["model_path"] == str(model_dir)
        assert info["is_generation"] is True and info["model_type"] == "qwen2"
        assert info["architectures"] == ["Qwen2ForCausalLM"] and info["tokenizer_path"] == str(model_dir)
    infos = [json.loads(get(server.base_url + p)[1]) for p in ("/server_info", "/get_server_info")]
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
    ids_batch = generate(
        server, input_ids=[[11, 12, 13], [14, 15]], sampling_params=[params, {**params, "max_new_tokens": 2}]
    )
    assert [len(item["output_ids"]) for item in ids_batch] == [5, 2]


def test_streaming_is_cumulative_and_ends_like_the_plain_answer(server):
    body = {
        "text": "dave sells each box",
        "sampling_params": {"max_new_tokens": 7, "temperature": 0, "ignore_eos": True},
    }
    plain = generate(server, **body)
    events = stream(server.base_url + "/generate", {**body, "stream": True})
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    # Tokens that end in half a character or could start a stop string are held back a step, so a chunk
    # may carry more than one new token; it must still stream (several chunks) and only ever grow.
    lengths = [len(c["output_ids"]) for c in chunks]
    assert len(lengths) >= 3 and lengths == sorted(set(lengths)) and lengths[-1] == 7
    for earlier, later in itertools.pairwise(chunks):
        assert later["output_ids"][: len(earlier["output_ids"])] == earlier["output_ids"]
        assert earlier["meta_info"]["finish_reason"] is None
    last = chunks[-1]
    assert last["text"] == plain["text"] and last["output_ids"] == plain["output_ids"]
    assert last["meta_info"]["finish_reason"] == {"type": "length", "length": 7}
    assert last["meta_info"]["completion_tokens"] == 7 and "cached_tokens" in last["meta_info"]
    batch = stream(
        server.base_url + "/generate", {"text": ["a", "b"], "stream": True, "sampling_params": body["sampling_params"]}
    )
    assert {c["index"] for c in batch[:-1]} == {0, 1}


def test_prompt_and_output_logprobs_match_a_plain_forward(server, reference):
    model, _ = reference
    flush(server)
    ids = random_ids(40, seed=1)
    out = generate(
        server,
        input_ids=ids,
        return_logprob=True,
        logprob_start_len=0,
        top_logprobs_num=3,
        return_text_in_logprobs=True,
        sampling_params={"max_new_tokens": 8, "temperature": 0, "ignore_eos": True},
    )
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
    partial = generate(
        server, input_ids=ids, return_logprob=True, logprob_start_len=30, sampling_params={"max_new_tokens": 1}
    )
    assert [e[1] for e in partial["meta_info"]["input_token_logprobs"]] == ids[30:]
    assert partial["meta_info"]["input_token_logprobs"][0][0] is None


def test_sampled_logprobs_are_temperature_scaled_and_seeded_sampling_repeats(server, reference):
    model, _ = reference
    ids = random_ids(20, seed=2)
    body = {
        "input_ids": ids,
        "return_logprob": True,
        "sampling_params": {"max_new_tokens": 5, "temperature": 0.7, "sampling_seed": 42, "ignore_eos": True},
    }
    first, again = generate(server, **body), generate(server, **body)
    assert first["output_ids"] == again["output_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    expected = torch.log_softmax(logits / 0.7, dim=-1)[first["output_ids"][0]].item()
    assert abs(output_logprobs(first)[0] - expected) < 1e-4


def test_original_logprob_env_reports_unscaled_logprobs(servers, reference):
    model, _ = reference
    server = servers(env={"SGLANG_RETURN_ORIGINAL_LOGPROB": "1"})
    assert json.loads(get(server.base_url + "/server_info")[1])["return_original_logprob"] is True
    ids = random_ids(20, seed=2)
    out = generate(
        server,
        input_ids=ids,
        return_logprob=True,
        sampling_params={"max_new_tokens": 1, "temperature": 0.7, "sampling_seed": 42},
    )
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    expected = torch.log_softmax(logits, dim=-1)[out["output_ids"][0]].item()
    assert abs(output_logprobs(out)[0] - expected) < 1e-4


def test_stop_string_and_stop_token(server):
    params = {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}
    base = generate(server, text="bob has more cups", sampling_params=params)
    ids, text = base["output_ids"], base["text"]
    stop_id = ids[3]
    by_token = generate(
        server, text="bob has more cups", sampling_params={**params, "ignore_eos": False, "stop_token_ids": [stop_id]}
    )
    cut = ids.index(stop_id) + 1
    assert by_token["output_ids"] == ids[:cut]
    assert by_token["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop_id}
    stop = text.strip()[-2:] if text.strip() else None
    if stop:
        by_string = generate(server, text="bob has more cups", sampling_params={**params, "stop": [stop]})
        assert by_string["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
        assert stop not in by_string["text"] and text.startswith(by_string["text"])


def test_streamed_text_never_shows_the_start_of_a_stop_string(server, reference):
    _, tokenizer = reference
    params = {"max_new_tokens": 16, "temperature": 1.0, "sampling_seed": 7, "ignore_eos": True}
    body = {"text": "how many apples does carol have", "sampling_params": params}
    free_run = generate(server, **body)
    pieces = [tokenizer.decode([t]) for t in free_run["output_ids"]]
    # A stop string spanning two tokens, first seen where those tokens are: the stream must hold its start back.
    for k in range(3, len(pieces) - 1):
        stop, offset = pieces[k] + pieces[k + 1], len("".join(pieces[:k]))
        if len(stop) >= 2 and "\ufffd" not in stop and free_run["text"].find(stop) == offset:
            break
    else:
        pytest.skip("no two-token stop string in this sample")
    body["sampling_params"] = {**params, "stop": stop}
    final = generate(server, **body)
    assert final["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    assert final["text"] == free_run["text"][:offset] and final["output_ids"] == free_run["output_ids"][: k + 2]
    chunks = stream(server.base_url + "/generate", {**body, "stream": True})[:-1]
    assert chunks[-1]["text"] == final["text"]
    assert all(final["text"].startswith(chunk["text"]) for chunk in chunks)


def test_a_model_that_fails_to_load_exits_the_process(tmp_path):
    server = engine_server(tmp_path / "no_such_model", tmp_path)
    with pytest.raises(ServerStartError) as failure:
        server.start()
    assert failure.value.exit_code == 1  # the engine exits; it does not sit at 503 until a timeout
    assert "no_such_model" in failure.value.log_tail


# -- OpenAI-compatible routes ------------------------------------------------------------------------------


def test_openai_models_and_completions(server, model_dir):
    status, raw = get(server.base_url + "/v1/models")
    assert status == 200 and json.loads(raw)["data"][0]["id"] == str(model_dir)
    flush(server)
    body = {"model": "tiny", "prompt": "eve gets 5 pens and", "max_tokens": 6, "temperature": 0, "logprobs": 2}
    status, first = post(server.base_url + "/v1/completions", body)
    assert status == 200 and first["object"] == "text_completion" and first["model"] == "tiny"
    choice = first["choices"][0]
    assert (
        choice["finish_reason"] in ("length", "stop")
        and len(choice["logprobs"]["token_logprobs"]) == first["usage"]["completion_tokens"]
    )
    assert all(len(top) <= 2 for top in choice["logprobs"]["top_logprobs"])
    assert first["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    _, second = post(server.base_url + "/v1/completions", body)
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == second["usage"]["prompt_tokens"] - 1
    assert second["choices"][0]["text"] == choice["text"]
    _, echoed = post(server.base_url + "/v1/completions", {**body, "echo": True})
    assert echoed["choices"][0]["text"] == body["prompt"] + choice["text"]
    assert echoed["choices"][0]["logprobs"]["token_logprobs"][0] is None
    events = stream(
        server.base_url + "/v1/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == first["usage"]["completion_tokens"]
    assert "".join(e["choices"][0]["text"] for e in events[:-2]) == choice["text"]
    streamed_logprobs = [
        lp for e in events[:-2] for lp in (e["choices"][0]["logprobs"] or {}).get("token_logprobs", [])
    ]
    # Streaming changes when results are sent, not how they are computed: at the same cache state as `second`
    # (both hit the prompt's first len - 1 ids) the same forwards run on the same shapes, so the floats are equal.
    assert events[-2]["usage"]["prompt_tokens_details"] == second["usage"]["prompt_tokens_details"]
    assert streamed_logprobs == second["choices"][0]["logprobs"]["token_logprobs"]
    # `first` ran cold: its last prompt id went through the whole-prompt forward, a cache hit's through a
    # one-id forward over the cached KV. Those are different matmul shapes, so fp32 sums in another order:
    # about one ulp apart (5e-7 at |logprob| ~ 4.7, transformers 5.24.0). 1e-5 is the prefix-cache bound
    # test_hf_server_cache.py uses for the same effect.
    assert max_abs_diff(streamed_logprobs, choice["logprobs"]["token_logprobs"]) < 1e-5


def test_openai_chat_uses_the_chat_template(server, reference):
    _, tokenizer = reference
    flush(server)
    messages = [{"role": "user", "content": "how many apples does alice have"}]
    template_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_len = len(tokenizer.encode(template_ids, add_special_tokens=False))
    body = {"messages": messages, "max_tokens": 5, "temperature": 0, "logprobs": True, "top_logprobs": 2}
    status, first = post(server.base_url + "/v1/chat/completions", body)
    assert status == 200 and first["object"] == "chat.completion"
    assert first["usage"]["prompt_tokens"] == prompt_len
    message, logprobs = first["choices"][0]["message"], first["choices"][0]["logprobs"]["content"]
    assert message["role"] == "assistant" and len(logprobs) == first["usage"]["completion_tokens"]
    assert all(
        len(entry["top_logprobs"]) == 2 and entry["bytes"] == list(entry["token"].encode()) for entry in logprobs
    )
    _, second = post(server.base_url + "/v1/chat/completions", body)
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == prompt_len - 1
    events = stream(server.base_url + "/v1/chat/completions", {**body, "stream": True})
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
        ("/generate", b"[1, 2]", "JSON object"),
        ("/v1/completions", b'{"prompt": "a", "max_tokens": 0}', "max_tokens"),
        ("/v1/completions", b'{"prompt": ""}', "empty"),
        ("/v1/chat/completions", b'{"messages": "hi"}', "messages"),
    ],
)
def test_malformed_requests_get_400_and_the_server_stays_up(server, path, raw, needle):
    status, body = post(server.base_url + path, raw=raw)
    assert status == 400
    message = body["error"]["message"] if "error" in body else body["message"]
    assert needle in message
    assert get(server.base_url + "/health_generate")[0] == 200


def test_concurrent_requests_equal_sequential_ones(server):
    bodies = []
    for i in range(16):
        params = {"max_new_tokens": 8 + i % 5, "ignore_eos": True}
        params.update({"temperature": 0} if i % 2 else {"temperature": 0.9, "sampling_seed": i})
        # Distinct first ids: no request can hit another's cached prefix, in either order.
        bodies.append(
            {
                "input_ids": random_ids(30 + i, seed=50 + i, first=VOCAB_LOW + i),
                "return_logprob": True,
                "sampling_params": params,
            }
        )

    def run(body):
        return generate(server, **body)

    flush(server)
    sequential = [run(body) for body in bodies]
    flush(server)
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, bodies))
    # Exact equality is expected here: the engine runs each sequence alone (never padded into a batch with the
    # others, see hf_engine.scheduler) and no request hits another's cache, so in either order each one
    # runs the same forwards on the same shapes.
    for one, other in zip(sequential, concurrent):
        assert one["output_ids"] == other["output_ids"]
        assert output_logprobs(one) == output_logprobs(other)


def test_logit_noise_flips_only_near_ties_varies_by_seed_and_repeats_for_one_seed(servers, reference):
    """--logit-noise (the false-alarm bench's noisy engine): every output logit moves by at most the bound, so a
    greedy token differs from the clean argmax only where the clean top two were within 2·bound; two seeds answer
    differently, one seed in the same arrival order answers the same."""
    bound = 0.5
    model, _ = reference
    noisy = [
        servers("--logit-noise", str(bound), "--logit-noise-seed", str(seed), env=env)
        for seed, env in ((1, None), (2, None), (1, {"HARNESS_TEST_COPY": "1"}))
    ]
    prompts = [support.random_ids(24, seed) for seed in range(12)]
    answers = [
        [
            generate(s, input_ids=ids, sampling_params={"temperature": 0, "max_new_tokens": 12})["output_ids"]
            for ids in prompts
        ]
        for s in noisy
    ]
    assert answers[0] == answers[2]
    assert answers[0] != answers[1]
    flips = 0
    for ids, out in zip(prompts, answers[0]):
        with torch.inference_mode():
            logits = model(torch.tensor([ids + out])).logits[0, len(ids) - 1 : -1].float()
        for row, token in zip(logits, out):
            top = float(row.max())
            assert top - float(row[token]) <= 2 * bound + 1e-5
            flips += int(row[token] < top)
    assert flips > 0  # the bound is large enough to move some tokens of the tiny random model
