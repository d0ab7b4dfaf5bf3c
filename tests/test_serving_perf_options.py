"""serving_perf's options: ShareGPT workloads (prompts filtered by tokens, picked by seed, sent as text) and the
messages for a bad `connections`, `bench_serving_prompts`, or the same requests without a flush.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from serving_perf_support import CANARY


def test_sharegpt_prompts_are_filtered_by_tokens_picked_by_seed_and_sent_as_text(tmp_path):
    from transformers import AutoTokenizer

    from harness.errors import ConfigError
    from harness.evals.perf.workload import Workload, sharegpt_requests

    tokenizer = AutoTokenizer.from_pretrained(CANARY)
    words = "Ann has seven red pens and buys twelve more at the shop"
    conversations = [
        {"conversations": [{"from": "human", "value": words[: 20 + 3 * i]}, {"from": "gpt", "value": words}]}
        for i in range(10)
    ]
    conversations += [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": words}]},  # too short
        {"conversations": [{"from": "human", "value": words * 20}, {"from": "gpt", "value": words}]},  # too long
        {"conversations": [{"from": "human", "value": words}]},
    ]  # one turn
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(conversations))
    own_lengths = Workload.from_options(
        "s", {"input_len": 64, "num_prompts": 8, "dataset": "sharegpt", "dataset_path": "x"}, "w"
    )
    requests = sharegpt_requests(own_lengths, tokenizer, path, seed=0)
    assert len(requests) == 10  # 8 prompts and 2 warm-up, from the 10 usable conversations
    reply = len(tokenizer.encode(words, add_special_tokens=False))
    assert {n for _, n in requests} == {reply} and {text for text, _ in requests} == {
        words[: 20 + 3 * i] for i in range(10)
    }
    assert (
        requests
        == sharegpt_requests(own_lengths, tokenizer, path, seed=0)
        != sharegpt_requests(own_lengths, tokenizer, path, seed=1)
    )
    fixed = Workload.from_options(
        "s", {"input_len": 64, "output_len": 16, "num_prompts": 8, "dataset": "sharegpt", "dataset_path": "x"}, "w"
    )
    assert {n for _, n in sharegpt_requests(fixed, tokenizer, path, seed=0)} == {16}
    too_many = Workload.from_options(
        "s", {"input_len": 64, "num_prompts": 20, "dataset": "sharegpt", "dataset_path": "x"}, "w"
    )
    with pytest.raises(ConfigError) as caught:
        sharegpt_requests(too_many, tokenizer, path, seed=0)
    assert str(caught.value) == (
        f"serving_perf.workloads.s: {path} has 10 usable conversations (2+ turns, 4+ tokens "
        "each, prompt <= input_len 64); 22 needed"
    )
    with pytest.raises(
        ConfigError, match=r"w\.s\.dataset: unknown workload dataset 'sharegtp' \(did you mean 'sharegpt'\?\)"
    ):
        Workload.from_options("s", {"dataset": "sharegtp"}, "w")


def test_a_workloads_connections_names_its_choices():
    from harness.errors import ConfigError
    from harness.evals.perf.workload import Workload

    with pytest.raises(ConfigError) as err:
        Workload.from_options("light", {"connections": "keepalive"}, "serving_perf.workloads")
    assert str(err.value) == (
        "serving_perf.workloads.light.connections: unknown connections 'keepalive' (did you mean "
        "'keep_alive'?); valid choices: keep_alive, per_request"
    )


@pytest.mark.parametrize(
    "option, value, message",
    [
        (
            "connections",
            "per-request",
            "serving_perf.connections: unknown connections 'per-request' (did you mean "
            "'per_request'?); valid choices: keep_alive, per_request",
        ),
        (
            "bench_serving_prompts",
            "harness",
            "serving_perf.bench_serving_prompts: unknown bench_serving_prompts 'harness'; valid choices: own, same",
        ),
    ],
)
def test_a_suite_option_names_its_choices(option, value, message):
    from harness.errors import ConfigError
    from harness.evals.serving_perf import ServingPerf

    ctx = type("Ctx", (), {"options": {option: value}})()
    with pytest.raises(ConfigError) as err:
        asyncio.run(ServingPerf()(ctx))
    assert str(err.value) == message


def test_the_same_requests_without_a_flush_is_refused():
    """Without a flush, the second tool of a repeat would find the first one's prompts in the prefix cache."""
    from harness.errors import ConfigError
    from harness.evals.serving_perf import ServingPerf

    ctx = type("Ctx", (), {"options": {"bench_serving": True, "flush_cache": False}})()
    with pytest.raises(
        ConfigError, match=r"^serving_perf: bench_serving_prompts: same needs flush_cache: true \(without"
    ):
        asyncio.run(ServingPerf()(ctx))
