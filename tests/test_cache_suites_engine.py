"""The cache-consistency suites against the real HF reference engine (a subprocess on a tiny random Qwen2), at page
sizes 1 and 16, and against misbehaving servers: a thin aiohttp proxy built here forwards to the engine and
rewrites its answers (misreported `cached_tokens`, logprobs perturbed only on cache hits, caching reported at the
wrong positions, a faked speculative server). Every failure is asserted on the message a user reads.
Evals are called directly with an `EvalContext`, as the plugin would call them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from harness.client.http import Client
from harness.evals.logprob_common import CacheCheckFailed
from harness.evals.logprob_decode_cache_hit import LogprobDecodeCacheHit
from harness.evals.logprob_prefill_cache_hit import LogprobPrefillCacheHit
from harness.evals.prefix_branching import PrefixBranching
from harness.evals.spec_accept_length import SpecAcceptLength, SpecCheckFailed
from harness.evals.types import EvalContext
from harness.verdict.checks import Bound, ShiftTest, check_bound, check_shift

REPO = Path(__file__).resolve().parents[1]
KL_OPTIONS = {"source": "canary", "num_samples": 6, "max_prompt_tokens": 150, "max_new_tokens": 12}
KL_MAX = Bound(1e-6, upper=True)  # the canary's fp32 bound in thresholds.yaml


# -- the engine subprocess ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"HF engine exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"HF engine not ready after {timeout_s} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the engine's own process group, SIGKILL it if it lingers, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from canary.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="module", params=[1, 16], ids=lambda p: f"page{p}")
def engine(request, tiny_model, tmp_path_factory):
    """(base URL, page size) of an HF engine serving the tiny model."""
    port, log = _free_port(), tmp_path_factory.mktemp("logs") / f"hf-page{request.param}.log"
    command = [
        sys.executable,
        "-m",
        "hf_engine",
        "--model-path",
        str(tiny_model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--page-size",
        str(request.param),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc, log)
        yield f"http://127.0.0.1:{port}", request.param
    finally:
        _stop(proc)


# -- the misbehaving proxy ------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def proxy(upstream: str, hooks: dict):
    """Forward everything to `upstream`; `hooks[path](request_json, response_json)` rewrites JSON answers."""
    import aiohttp
    from aiohttp import web

    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {"Content-Type": "application/json"} if body else None
        async with session.request(request.method, upstream + request.path_qs, data=body or None, headers=headers) as r:
            payload, status, content_type = await r.read(), r.status, r.content_type
        hook = hooks.get(request.path.removeprefix("/get_"), hooks.get(request.path))
        if hook and status == 200 and content_type == "application/json":
            payload = orjson.dumps(hook(orjson.loads(body) if body else None, orjson.loads(payload)))
        return web.Response(body=payload, status=status, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()
        await session.close()


def run_eval(eval_obj, url: str, model: Path, options: dict, hooks: dict | None = None):
    """Run one eval as the plugin does: server_info read from the (possibly proxied) server."""

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            target = await stack.enter_async_context(proxy(url, hooks)) if hooks else url
            client = Client(target)
            stack.push_async_callback(client.close)
            info = await client.server_info()
            ctx = EvalContext(client, "tiny", info, options, str(model), str(model))
            return await eval_obj(ctx)

    return asyncio.run(main())


def _meta(hook):
    def rewrite(request, response):
        hook(request, response["meta_info"])
        return response

    return {"/generate": rewrite}


def _zero_cached(request, meta):
    meta["cached_tokens"] = 0


def _cached_is_prompt_length(request, meta):
    meta["cached_tokens"] = meta["prompt_tokens"]


def _perturb_logprobs_on_hits(request, meta):
    if meta["cached_tokens"] > 0 and "output_token_logprobs" in meta:
        meta["output_token_logprobs"] = [[lp - 0.05, tid, text] for lp, tid, text in meta["output_token_logprobs"]]


def _shift_hits(shift: float):
    def hook(request, meta):
        if meta["cached_tokens"] > 0 and "output_token_logprobs" in meta:  # warm-ups ask for no logprobs
            meta["output_token_logprobs"] = [[lp - shift, tid, text] for lp, tid, text in meta["output_token_logprobs"]]

    return hook


def _round_cached_to_64(request, meta):
    meta["cached_tokens"] = meta["cached_tokens"] // 64 * 64


# -- the real engine ------------------------------------------------------------------------------------
@pytest.mark.parametrize("suite", [LogprobPrefillCacheHit, LogprobDecodeCacheHit], ids=["prefill", "decode"])
def test_logprobs_on_cache_hits_match_a_cold_replay(engine, tiny_model, suite):
    url, page = engine
    result = run_eval(suite(), url, tiny_model, KL_OPTIONS)
    assert result.skipped is None
    assert result.metrics["hit_rate"] == 1.0  # 150 + 12 + 1 ids: turn 2 reuses 160 > 151 at page 16
    assert result.details["num_hits"] == 6 and result.details["compared_tokens"] == 6 * 12
    # SGLang's semantics: at least one prompt token computed, reuse rounded down to the page; turn 2 of the decode
    # suite is 150 prompt + 12 generated + 1 separator ids, so it reuses 162 (page 1) or 160 (page 16).
    expected_cached = {("prefill", 1): 149, ("prefill", 16): 144, ("decode", 1): 162, ("decode", 16): 160}
    assert result.details["mean_cached_tokens"] == expected_cached[(suite.suite.split("_")[1], page)]
    assert 0.0 <= result.metrics["kl_div"] <= 1e-6, result.details
    verdict = check_bound(suite.suite, "kl_div", result.metrics["kl_div"], KL_MAX)
    assert verdict.passed, verdict.message()


def test_branching_reuses_the_prefix_rounded_to_the_page(engine, tiny_model):
    url, page = engine
    result = run_eval(PrefixBranching(), url, tiny_model, {})
    assert result.metrics == {"branch_mismatches": 0.0}
    observed = {row["prefix_len"]: row["observed"] for row in result.details["branches"]}
    # What SGLang 0.5.17 reported for the same requests at page sizes 1 and 16.
    assert observed == (
        {257: [0, 257, 257], 100: [0, 100, 100]} if page == 1 else {257: [0, 256, 256], 100: [0, 96, 96]}
    )


def test_disabled_radix_cache_skips_the_cache_suites(tiny_model, tmp_path):
    port, log = _free_port(), tmp_path / "hf.log"
    command = [
        sys.executable,
        "-m",
        "hf_engine",
        "--model-path",
        str(tiny_model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-radix-cache",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc, log)
        for suite in (LogprobPrefillCacheHit(), LogprobDecodeCacheHit(), PrefixBranching()):
            result = run_eval(suite, f"http://127.0.0.1:{port}", tiny_model, {})
            assert "disable_radix_cache=True" in result.skipped
    finally:
        _stop(proc)


# -- misbehaving servers (page 1 is enough) -------------------------------------------------------------
page1 = pytest.mark.parametrize("engine", [1], indirect=True, ids=["page1"])


@page1
@pytest.mark.parametrize("suite", [LogprobPrefillCacheHit, LogprobDecodeCacheHit], ids=["prefill", "decode"])
def test_a_server_reporting_no_cache_hits_fails_with_the_hit_rate(engine, tiny_model, suite):
    with pytest.raises(CacheCheckFailed) as info:
        run_eval(suite(), engine[0], tiny_model, KL_OPTIONS, _meta(_zero_cached))
    message = str(info.value)
    assert f"{suite.suite}: only 0 of 6 samples hit the prefix cache (hit_rate 0.000" in message
    assert "more than 0.5 must hit" in message
    assert info.value.result.metrics["kl_div"] == math.inf


@page1
def test_a_server_claiming_the_whole_prompt_was_cached_fails(engine, tiny_model):
    with pytest.raises(CacheCheckFailed, match=r"reported cached_tokens=150 for a prompt of 150 tokens.*misreports"):
        run_eval(LogprobPrefillCacheHit(), engine[0], tiny_model, KL_OPTIONS, _meta(_cached_is_prompt_length))


@page1
@pytest.mark.parametrize("suite", [LogprobPrefillCacheHit, LogprobDecodeCacheHit], ids=["prefill", "decode"])
def test_logprobs_perturbed_only_on_cache_hits_fail_the_kl_bound(engine, tiny_model, suite):
    result = run_eval(suite(), engine[0], tiny_model, KL_OPTIONS, _meta(_perturb_logprobs_on_hits))
    assert result.metrics["hit_rate"] == 1.0
    assert result.metrics["max_logprob_diff"] == pytest.approx(0.05, abs=1e-4)
    assert result.details["worst_token"]["sample"].startswith("canary-")
    verdict = check_bound(f"{suite.suite}[tiny]", "kl_div", result.metrics["kl_div"], KL_MAX)
    assert not verdict.passed
    # k3 of a constant gap r = 0.05: e^0.05 − 1 − 0.05 ≈ 1.27e-3
    assert verdict.message() == f"{suite.suite}[tiny]: kl_div 1.3e-03 > max 1.0e-06"


# fp32 on CPU: hit and control agree with their replays to ~1e-7 per token, so any shift over 1e-4 is a bug.
SHIFT_TEST = ShiftTest(alpha=0.05, min_effect=1e-4)


@page1
@pytest.mark.parametrize("shift", [0.02, 0.05, 0.1])
@pytest.mark.parametrize("suite", [LogprobPrefillCacheHit, LogprobDecodeCacheHit], ids=["prefill", "decode"])
def test_the_control_catches_a_small_hit_only_shift_and_passes_a_clean_run(engine, tiny_model, suite, shift):
    clean = run_eval(suite(), engine[0], tiny_model, KL_OPTIONS)
    assert clean.details["num_controls"] == 6 and len(clean.units["hit_shift"]) == 6
    assert abs(clean.metrics["hit_shift"]) < 1e-5 and 0.0 <= clean.metrics["control_kl_div"] < 1e-6, clean.metrics
    assert check_shift(suite.suite, "hit_shift", clean.units["hit_shift"], SHIFT_TEST).passed
    shifted = run_eval(suite(), engine[0], tiny_model, KL_OPTIONS, _meta(_shift_hits(shift)))
    assert shifted.metrics["hit_shift"] == pytest.approx(-shift, abs=1e-5)
    assert shifted.metrics["control_kl_div"] < 1e-6  # the controls ran cold: the proxy left them alone
    verdict = check_shift(f"{suite.suite}[tiny]", "hit_shift", shifted.units["hit_shift"], SHIFT_TEST)
    # Six prompts all shifted the same way: the exact sign-flip p is 2/2^6 = 0.031.
    assert verdict.message() == (
        f"{suite.suite}[tiny]: hit_shift {-shift:.1e} (95% CI [{-shift:.1e}, {-shift:.1e}]): shifted "
        "(sign-flip p=0.031 < α=0.05, n=6; detects |shift| ≥ 1.0e-04 with power 80%)"
    )


@page1
def test_caching_reported_at_the_wrong_position_fails_branching(engine, tiny_model):
    with pytest.raises(CacheCheckFailed) as info:
        run_eval(PrefixBranching(), engine[0], tiny_model, {}, _meta(_round_cached_to_64))
    message = str(info.value)
    assert "P=257: observed [0, 256, 256], expected [0, 257, 257]" in message
    assert "P=100: observed [0, 64, 64], expected [0, 100, 100]" in message
    assert "attention radix cache (architectures=['Qwen2ForCausalLM']), page_size 1" in message
    assert info.value.result.metrics["branch_mismatches"] == 4


@page1
def test_a_hybrid_extra_buffer_server_that_caches_like_attention_fails_branching(engine, tiny_model):
    hooks = {
        "/server_info": lambda req, info: {**info, "mamba_radix_cache_strategy": "extra_buffer"},
        "/model_info": lambda req, info: {**info, "architectures": ["Qwen3NextForCausalLM"]},
    }
    with pytest.raises(CacheCheckFailed) as info:
        run_eval(PrefixBranching(), engine[0], tiny_model, {}, hooks)
    message = str(info.value)
    assert "P=257: observed [0, 257, 257], expected [0, 0, 256]" in message
    assert "hybrid Mamba extra_buffer" in message and "only request 3 reuses the prefix" in message


# -- speculative decoding, faked by the proxy (the HF engine has none) ----------------------------------
@pytest.fixture(scope="module")
def gsm8k_file(tmp_path_factory) -> str:
    from harness.evals.synthetic_gsm8k import make_test_split, write_jsonl

    path = tmp_path_factory.mktemp("gsm8k") / "gsm8k.jsonl"
    return str(write_jsonl([p.to_gsm8k() for p in make_test_split(n=12)], path))


def _speculative(verify_ct, server_avg: float | None = 2.5):
    def server_info(req, info):
        states = [{"avg_spec_accept_length": server_avg}] if server_avg is not None else [{}]
        return {**info, "speculative_algorithm": "EAGLE", "speculative_num_draft_tokens": 4, "internal_states": states}

    def generate(req, response):
        meta = response["meta_info"]
        if verify_ct is not None:
            meta["spec_verify_ct"] = verify_ct(meta["completion_tokens"])
        return response

    return {"/server_info": server_info, "/generate": generate}


@page1
def test_spec_accept_length_on_a_speculative_server(engine, tiny_model, gsm8k_file):
    options = {"source": gsm8k_file, "num_questions": 6, "num_shots": 2, "max_new_tokens": 16}
    result = run_eval(SpecAcceptLength(), engine[0], tiny_model, options, _speculative(lambda n: math.ceil(n / 2)))
    tokens = result.details["completion_tokens"]
    assert result.n == 6 and tokens > 0
    assert result.metrics["accept_length"] == tokens / result.details["spec_verify_ct"]
    assert result.details["server_avg_accept_length_after"] == 2.5
    assert result.details["server_minus_ours"] == pytest.approx(2.5 - result.metrics["accept_length"])


@page1
def test_spec_drafts_never_accepted_fail_the_accept_length_floor(engine, tiny_model, gsm8k_file):
    options = {"source": gsm8k_file, "num_questions": 6, "num_shots": 2, "max_new_tokens": 16}
    result = run_eval(SpecAcceptLength(), engine[0], tiny_model, options, _speculative(lambda n: n))
    verdict = check_bound(
        "spec_accept_length[tiny]", "accept_length", result.metrics["accept_length"], Bound(1.5, False)
    )
    assert verdict.message() == "spec_accept_length[tiny]: accept_length 1.00 < min 1.50"


@page1
def test_spec_server_without_verify_counts_fails_with_the_reason(engine, tiny_model, gsm8k_file):
    options = {"source": gsm8k_file, "num_questions": 3, "num_shots": 2, "max_new_tokens": 8}
    with pytest.raises(SpecCheckFailed, match=r"speculative_algorithm=EAGLE but 3 of 3 responses have no integer"):
        run_eval(SpecAcceptLength(), engine[0], tiny_model, options, _speculative(None, None))
