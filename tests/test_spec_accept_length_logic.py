"""Decision logic of `spec_accept_length` on responses shaped like SGLang 0.5.17's (tests/data/sglang_responses)."""

import asyncio
import json
from pathlib import Path

import pytest

from harness.evals.spec_accept_length import (
    SpecAcceptLength,
    SpecCheckFailed,
    accept_length,
    server_accept_length,
    speculative_algorithm,
)
from harness.evals.types import EvalContext

DATA = Path(__file__).parent / "data" / "sglang_responses"
SERVER_INFO = json.loads((DATA / "server_info.json").read_text())
GENERATE = json.loads((DATA / "generate.json").read_text())


def test_accept_length_is_total_tokens_over_total_verify_steps():
    metas = [r["meta_info"] for r in GENERATE["ngram_requests"]]
    # (20 + 15) / (10 + 10), not the mean of the per-request 2.0 and 1.5 ratios
    assert accept_length(metas, "NGRAM") == (1.75, 35, 20)


def test_missing_spec_verify_ct_on_a_speculative_server_fails_with_the_reason():
    metas = [r["meta_info"] for r in GENERATE["ngram_requests"]]
    stripped = [{k: v for k, v in m.items() if k != "spec_verify_ct"} for m in metas]
    with pytest.raises(
        SpecCheckFailed,
        match=r"speculative_algorithm=EAGLE but 2 of 2 responses have no integer meta_info.spec_verify_ct",
    ):
        accept_length(stripped, "EAGLE")
    zero = [{**m, "spec_verify_ct": 0} for m in metas]
    with pytest.raises(SpecCheckFailed, match="no verify step ran"):
        accept_length(zero, "EAGLE")


def test_server_side_accept_length_is_read_from_internal_states():
    assert server_accept_length(SERVER_INFO["ngram"]) == 1.84
    assert server_accept_length(SERVER_INFO["eagle_no_verify_yet"]) is None  # SGLang omits it before any verify
    assert server_accept_length({}) is None


@pytest.mark.parametrize(
    "name, algorithm", [("ngram", "NGRAM"), ("eagle_no_verify_yet", "EAGLE"), ("attention_page1", None)]
)
def test_speculative_algorithm_from_server_info(name, algorithm):
    assert speculative_algorithm(SERVER_INFO[name]) == algorithm


def test_non_speculative_server_skips_without_sending_a_request():
    ctx = EvalContext(client=None, case_id="c", server_info=SERVER_INFO["attention_page1"], options={}, model_path="m")
    result = asyncio.run(SpecAcceptLength()(ctx))
    assert result.skipped == "the server runs without speculative decoding (speculative_algorithm unset)"
