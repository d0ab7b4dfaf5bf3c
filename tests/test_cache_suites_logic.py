"""Pure pieces of the logprob cache-hit suites: the k3 estimator, hit rules and gates, the cached_tokens contract,
prompt sources. Responses are shaped like SGLang 0.5.17's (tests/data/sglang_responses/generate.json)."""

import json
import math
from pathlib import Path

import pytest

from harness.errors import ConfigError, ProtocolError
from harness.evals.logprob_common import (
    CacheCheckFailed,
    Prompt,
    build_prompts,
    cached_tokens_of,
    canary_text,
    check_informative,
    gate_hit_rate,
    k3_per_token,
    output_logprobs,
    radix_disabled_reason,
    record_prompt,
    summarize_kl,
)
from harness.evals.logprob_decode_cache_hit import is_decode_hit
from harness.evals.types import EvalContext

DATA = Path(__file__).parent / "data" / "sglang_responses"
GENERATE = json.loads((DATA / "generate.json").read_text())
SERVER_INFO = json.loads((DATA / "server_info.json").read_text())


def test_k3_per_token_exact_values():
    # r = cold − hit; (e^r − 1) − r
    assert k3_per_token([-1.0, -2.0, -3.0], [-1.0, -2.5, -2.5]) == pytest.approx(
        [0.0, math.exp(0.5) - 1.5, math.exp(-0.5) - 0.5], rel=1e-12
    )
    assert k3_per_token([-1.0], [-1.0]) == [0.0]
    assert k3_per_token([0.0], [-800.0]) == [math.inf]  # overflow is a failure, never a pass
    with pytest.raises(ValueError):
        k3_per_token([-1.0], [-1.0, -2.0])


def test_summarize_kl_averages_per_sequence_then_over_sequences_and_finds_the_worst_token():
    summary = summarize_kl(
        [("a", [-1.0, -2.0], [-1.0, -2.5]), ("b", [-3.0, -1.0, -1.0, -1.0], [-2.9, -1.0, -1.0, -1.0])]
    )
    kl_a = (math.exp(0.5) - 1.5) / 2
    kl_b = (math.exp(-0.1) - 1 + 0.1) / 4
    assert summary.per_sample == pytest.approx({"a": kl_a, "b": kl_b})
    assert summary.kl_div == pytest.approx((kl_a + kl_b) / 2)  # not the token-weighted mean
    assert summary.max_abs_gap == pytest.approx(0.5)
    assert summary.worst == {"sample": "a", "token_index": 1, "cold_logprob": -2.0, "hit_logprob": -2.5}
    assert summary.tokens == 6


def test_summarize_kl_of_identical_logprobs_is_zero_and_of_nothing_is_an_error():
    assert summarize_kl([("a", [-1.0, -2.0], [-1.0, -2.0])]).kl_div == 0.0
    with pytest.raises(ValueError, match="no sample"):
        summarize_kl([("a", [], [])])


def test_constant_replayed_logprobs_make_the_comparison_vacuous():
    """The H100 run of 2026-11-22: SGLang served a tied Qwen3-Next checkpoint with a zero lm_head, so every
    logprob was -ln(394) and the KL was 0.0 without checking anything."""
    uniform = -math.log(394)
    with pytest.raises(CacheCheckFailed) as info:
        check_informative("logprob_prefill_cache_hit", [[uniform] * 32, [uniform] * 32])
    assert str(info.value).startswith(
        "logprob_prefill_cache_hit: all 64 replayed logprobs equal -5.976351 (uniform over 394 tokens if that is "
        "-ln(vocab)): the model's output does not depend on its input, so the cache comparison is vacuous."
    )
    check_informative("logprob_prefill_cache_hit", [[uniform] * 31 + [uniform + 1e-3], [uniform] * 32])
    check_informative("logprob_prefill_cache_hit", [[-1.0]])  # one token: nothing to compare it with


def test_output_logprobs_reads_sglang_triples():
    assert output_logprobs(GENERATE["prefill_hit_with_logprobs"]) == [-1.25, -0.5, -2.0]


def test_prefill_hit_and_sanity_of_cached_tokens():
    prompt = Prompt("s0", list(range(300)))
    assert cached_tokens_of("suite", prompt, GENERATE["prefill_hit_with_logprobs"], 300) == 299
    too_many = {"meta_info": {"cached_tokens": 300}}
    with pytest.raises(
        CacheCheckFailed, match=r"sample s0: the server reported cached_tokens=300 for a prompt of 300 tokens"
    ):
        cached_tokens_of("suite", prompt, too_many, 300)
    with pytest.raises(CacheCheckFailed, match="expected an integer"):
        cached_tokens_of("suite", prompt, {"meta_info": {"cached_tokens": None}}, 300)
    # Absent, it is not a cache bug but an API this suite cannot judge: an error, not a failed check.
    with pytest.raises(
        ProtocolError, match=r"sample s0: the server's meta_info has no 'cached_tokens' \(it has e2e_latency\)"
    ):
        cached_tokens_of("suite", prompt, {"meta_info": {"e2e_latency": 0.1}}, 300)


@pytest.mark.parametrize(
    "cached, turn1_len, hit",
    # 0.5.17: prompt 300 + 32 generated + 1 → 332 (page 1), 320 (page 16), 256 (Qwen3-Next extra_buffer).
    [(332, 300, True), (320, 300, True), (302, 300, True), (301, 300, False), (256, 300, False), (0, 300, False)],
)
def test_decode_hit_needs_generated_tokens_reused(cached, turn1_len, hit):
    assert is_decode_hit(cached, turn1_len) is hit


def test_hit_rate_gate_needs_strictly_more_than_the_minimum():
    assert gate_hit_rate("s", 5, 8, 0.5, "rule", [1] * 8) == 0.625
    with pytest.raises(CacheCheckFailed) as info:
        gate_hit_rate("logprob_prefill_cache_hit", 4, 8, 0.5, "cached_tokens > 0", [0, 0, 7, 7, 0, 0, 7, 7])
    message = str(info.value)
    assert "only 4 of 8 samples hit the prefix cache (hit_rate 0.500" in message
    assert "more than 0.5 must hit" in message
    assert info.value.result.metrics["hit_rate"] == 0.5
    assert info.value.result.metrics["kl_div"] == math.inf  # never a vacuous 0


def test_radix_disabled_reason():
    assert radix_disabled_reason(SERVER_INFO["attention_radix_disabled"]).startswith(
        "the server runs with disable_radix_cache=True"
    )
    assert radix_disabled_reason(SERVER_INFO["attention_page1"]) is None


def test_record_prompt_schemas():
    assert record_prompt({"context": "C", "question": "Q?"}, "x") == "C Q?"  # LongBench-v2, as SGLang's kit
    assert record_prompt({"text": "t"}, "x") == "t"
    assert record_prompt({"input_ids": [3, 4]}, "x") == [3, 4]
    with pytest.raises(ConfigError, match=r"f.jsonl\[2\]: a prompt record needs"):
        record_prompt({"body": "?"}, "f.jsonl[2]")


def test_canary_text_is_deterministic_and_differs_per_sample():
    assert canary_text(3, 500) == canary_text(3, 500)
    assert canary_text(3, 500) != canary_text(4, 500)
    assert len(canary_text(0, 500)) >= 500


class _Tokenizer:
    def encode(self, text):
        return [ord(c) for c in text]


def _ctx(tmp_path, **kw):
    return EvalContext(
        client=None, case_id="c", server_info={}, options={}, model_path="m", base_dir=str(tmp_path), **kw
    )


def test_build_prompts_from_local_files_truncates_and_honours_limits(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.evals.logprob_common.tokenizer_for", lambda ctx: _Tokenizer())
    (tmp_path / "p.txt").write_text("first paragraph here\n\nsecond one\n\n\nthird\n")
    (tmp_path / "p.jsonl").write_text('{"_id": "a", "context": "ctx", "question": "q"}\n{"input_ids": [5, 6, 7, 8]}\n')
    opts = {"source": "p.txt", "subset": None, "split": "train", "num_samples": 2, "max_prompt_tokens": 5}
    assert build_prompts(_ctx(tmp_path), opts) == [
        Prompt("p.txt-0", [ord(c) for c in "first"]),
        Prompt("p.txt-1", [ord(c) for c in "secon"]),
    ]
    prompts = build_prompts(_ctx(tmp_path), {**opts, "source": "p.jsonl", "num_samples": 10})
    assert prompts == [Prompt("a", [ord(c) for c in "ctx q"]), Prompt("p.jsonl-1", [5, 6, 7, 8])]
    assert len(build_prompts(_ctx(tmp_path, smoke=True), {**opts, "source": "canary", "num_samples": 48})) == 4
    assert len(build_prompts(_ctx(tmp_path, limit=3), {**opts, "source": "canary", "num_samples": 48})) == 3
    with pytest.raises(ConfigError, match="prompt file not found"):
        build_prompts(_ctx(tmp_path), {**opts, "source": "missing.txt"})


def test_hub_prompts_are_streamed_and_formatted_like_sglangs_longbench_loader(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    def load_dataset(name, subset, split, streaming):
        calls.append((name, subset, split, streaming))
        return iter(
            [{"_id": f"lb{i}", "context": f"context {i}", "question": "Q?", "choices": "..."} for i in range(100)]
        )

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr("harness.evals.logprob_common.tokenizer_for", lambda ctx: _Tokenizer())
    opts = {
        "source": "THUDM/LongBench-v2",
        "subset": None,
        "split": "train",
        "num_samples": 2,
        "max_prompt_tokens": 9,
    }
    prompts = build_prompts(_ctx(tmp_path), opts)
    assert calls == [("THUDM/LongBench-v2", None, "train", True)]
    assert prompts == [Prompt("lb0", [ord(c) for c in "context 0"]), Prompt("lb1", [ord(c) for c in "context 1"])]


class _ReplayClient:
    """Answers the cold replay with a stored real SGLang response (and counts flushes)."""

    def __init__(self, response):
        self.response, self.flushes = response, 0

    async def flush_cache(self):
        self.flushes += 1

    async def generate(self, payload):
        return self.response

    async def map(self, fn, items, progress=None):
        return [await fn(item) for item in items]


REAL_REPLAY = json.loads((DATA / "qwen3_next_extra_buffer_replay.json").read_text())


def _replay(response, output_ids):
    import asyncio
    import copy

    from harness.evals.logprob_common import Generation, cold_replay

    hit = Generation(Prompt("s0", REAL_REPLAY["prompt_ids"]), output_ids, [0.0] * len(output_ids), 256)
    client = _ReplayClient(copy.deepcopy(response))
    ctx = EvalContext(client=client, case_id="c", server_info={}, options={}, model_path="m")
    return asyncio.run(cold_replay(ctx, "suite", [hit]))[0], client.flushes


def test_cold_replay_on_a_real_sglang_answer_returns_the_generated_tokens_logprobs():
    # The hit request and its cold replay as SGLang 0.5.17 answered them (Qwen3-Next extra_buffer): KL 0.
    generated = REAL_REPLAY["generate"]
    assert generated["meta_info"]["cached_tokens"] == 256 and REAL_REPLAY["replay"]["meta_info"]["cached_tokens"] == 0
    cold, flushes = _replay(REAL_REPLAY["replay"], generated["output_ids"])
    assert flushes == 1
    assert summarize_kl([("s0", cold, output_logprobs(generated))]).kl_div == 0.0


def test_cold_replay_accepts_sglangs_zero_for_the_last_vocabulary_id_and_rejects_other_differences():
    # SGLang reports input ids >= vocab_size - 1 as 0 in input_token_logprobs (seen: id 393 of 394 came back as 0).
    output_ids = list(REAL_REPLAY["generate"]["output_ids"])
    output_ids[5] = 393
    replay = json.loads(json.dumps(REAL_REPLAY["replay"]))
    replay["meta_info"]["input_token_logprobs"][-32 + 5][1] = 0
    assert len(_replay(replay, output_ids)[0]) == 32
    replay["meta_info"]["input_token_logprobs"][-32 + 7][1] = 1
    with pytest.raises(
        CacheCheckFailed, match=r"returned 332 input_token_logprobs whose last 32 ids differ .* at index 7"
    ):
        _replay(replay, output_ids)
    cached = json.loads(json.dumps(REAL_REPLAY["replay"]))
    cached["meta_info"]["cached_tokens"] = 256
    with pytest.raises(CacheCheckFailed, match=r"the cold replay .* reported cached_tokens=256; it must recompute"):
        _replay(cached, REAL_REPLAY["generate"]["output_ids"])
