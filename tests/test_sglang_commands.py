"""Launch lines of every engine and the SGLang config helpers (no sglang needed), plus the preflight's
messages driven by a small stand-in parser (the real parsers are in test_preflight_real.py)."""

from __future__ import annotations

import argparse
import sys

import pytest

from harness.config.spec import ServerSpec
from harness.errors import ConfigError
from harness.serve.engines import get_engine
from harness.serve.engines import preflight as pf
from harness.serve.engines import sglang as sg

SPEC = ServerSpec("qwen", "tp2", "Qwen/Qwen3-8B", args=("--tp-size", "2"), tokenizer_path="/tok")


def test_sglang_command():
    assert get_engine("sglang").command(SPEC, "127.0.0.1", 31000) == [
        sys.executable,
        "-m",
        "sglang.launch_server",
        "--model-path",
        "Qwen/Qwen3-8B",
        "--tokenizer-path",
        "/tok",
        "--host",
        "127.0.0.1",
        "--port",
        "31000",
        "--tp-size",
        "2",
    ]
    engine = get_engine("sglang")
    assert (engine.health_path, engine.startup_timeout, engine.launches) == ("/health_generate", 600.0, True)


def test_hf_command():
    spec = ServerSpec(
        "tiny", "page16", "/models/tiny", engine="hf", args=("--page-size", "16", "--disable-radix-cache")
    )
    assert get_engine("hf").command(spec, "127.0.0.1", 31001) == [
        sys.executable,
        "-m",
        "hf_engine",
        "--model-path",
        "/models/tiny",
        "--host",
        "127.0.0.1",
        "--port",
        "31001",
        "--page-size",
        "16",
        "--disable-radix-cache",
    ]
    assert get_engine("hf").health_path == "/health_generate"


def test_vllm_command():
    spec = ServerSpec("tiny", "cpu", "/models/tiny", engine="vllm", args=("--max-model-len", "2048"))
    assert get_engine("vllm").command(spec, "127.0.0.1", 31002) == [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/models/tiny",
        "--host",
        "127.0.0.1",
        "--port",
        "31002",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--max-model-len",
        "2048",
    ]
    assert get_engine("vllm").health_path == "/health"


def test_vllm_command_for_a_vlm_raises_the_image_limit_to_what_its_suites_send():
    spec = ServerSpec("tiny-vl", "vllm", "/models/tiny-vl", engine="vllm", images_per_prompt=7)
    assert get_engine("vllm").command(spec, "127.0.0.1", 31002)[-2:] == ["--limit-mm-per-prompt", '{"image": 7}']
    own = ServerSpec("tiny-vl", "vllm", "/m", engine="vllm", images_per_prompt=7, args=("--limit-mm-per-prompt", "{}"))
    assert get_engine("vllm").command(own, "127.0.0.1", 1)[-2:] == ["--limit-mm-per-prompt", "{}"]


def test_attach_launches_nothing():
    engine = get_engine("attach")
    assert not engine.launches and engine.health_path == "/health"
    with pytest.raises(NotImplementedError):
        engine.command(SPEC, "127.0.0.1", 1)


def test_helpers_spell_every_kind():
    assert sg.tp(4) == ["--tp-size", "4"]
    assert sg.dp(2) == ["--dp-size", "2"]
    assert sg.pp(2) == ["--pp-size", "2"]
    assert sg.ep_dp_attention(8, 8) == [
        "--ep-size",
        "8",
        "--dp-size",
        "8",
        "--enable-dp-attention",
        "--moe-a2a-backend",
        "deepep",
    ]
    assert sg.eagle("lmsys/draft", 3, 1, 4, algorithm="EAGLE3") == [
        "--speculative-algorithm",
        "EAGLE3",
        "--speculative-draft-model-path",
        "lmsys/draft",
        "--speculative-num-steps",
        "3",
        "--speculative-eagle-topk",
        "1",
        "--speculative-num-draft-tokens",
        "4",
    ]
    assert sg.mtp(1, 1, 2)[:2] == ["--speculative-algorithm", "NEXTN"]
    assert "--speculative-draft-model-path" not in sg.mtp(1, 1, 2)
    assert sg.mtp(1, 1, 2, draft_path="/d")[2:4] == ["--speculative-draft-model-path", "/d"]
    assert sg.ngram(4) == ["--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens", "4"]
    assert sg.mamba("extra_buffer", 128) == [
        "--mamba-radix-cache-strategy",
        "extra_buffer",
        "--mamba-track-interval",
        "128",
    ]
    assert sg.mamba("no_buffer") == ["--mamba-radix-cache-strategy", "no_buffer", "--disable-overlap-schedule"]
    assert sg.page_size(16) == ["--page-size", "16"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sg.tp(0), "tp must be a positive integer, got 0"),
        (lambda: sg.dp("2"), "dp must be a positive integer, got '2'"),
        (
            lambda: sg.eagle("d", 3, 1, 4, algorithm="EAGEL3"),
            "unknown EAGLE algorithm 'EAGEL3' (did you mean 'EAGLE3'?)",
        ),
        (lambda: sg.eagle("", 3, 1, 4), "draft_path is empty"),
        (
            lambda: sg.mamba("extra_bufer"),
            "unknown mamba radix cache strategy 'extra_bufer' (did you mean 'extra_buffer'?)",
        ),
        (lambda: sg.page_size(True), "page_size must be a positive integer, got True"),
    ],
)
def test_helpers_reject_bad_values(call, message):
    with pytest.raises(ConfigError) as caught:
        call()
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("args", "gpus"),
    [
        ((), 1),
        (("--tp-size", "4"), 4),
        (("--tp", "4"), 1),  # not SGLang's spelling: left to the preflight, counted as 1
        (("--tp-size=2", "--pp-size", "2"), 4),
        (("--tensor-parallel-size", "2", "--dp-size", "2"), 4),
        (("--tp-size", "8", *sg.ep_dp_attention(8, 8)), 8),  # DP attention runs inside the TP group
        (("--tp-size", "2", "--attn-dp-size", "2"), 2),
        (("--tp-size", "x"), 1),
        (("--device", "cpu"), 0),  # SGLang's CPU backend occupies no GPU
        (("--device=cuda", "--tp-size", "2"), 2),
    ],
)
def test_gpus_needed_by_sglang_args(args, gpus):
    spec = ServerSpec("m", "c", "org/m", args=args)
    assert get_engine("sglang").gpus_needed(spec) == gpus


def test_gpus_needed_respects_the_spec_and_engine():
    assert get_engine("sglang").gpus_needed(ServerSpec("m", "c", "org/m", gpus=8, args=("--tp-size", "2"))) == 8
    assert get_engine("hf").gpus_needed(ServerSpec("m", "c", "org/m", engine="hf", args=("--device", "cuda"))) == 1
    assert get_engine("hf").gpus_needed(ServerSpec("m", "c", "org/m", engine="hf")) == 0
    assert get_engine("attach").gpus_needed(ServerSpec("m", "c", "", engine="attach", gpus=8)) == 0


def test_version_string_prefers_what_the_server_says():
    assert get_engine("sglang").describe_version({"version": "0.5.17"}) == "sglang 0.5.17"
    assert get_engine("hf").describe_version({"engine": "hf-reference", "version": "0.1+tf5"}) == "hf-reference 0.1+tf5"
    assert get_engine("vllm").describe_version({}) == "vllm unknown"


# -- preflight logic against a stand-in parser (the real SGLang parsers: test_preflight_real.py) -----------------


@pytest.fixture
def stand_in_sglang(monkeypatch):
    parser = pf._RaisingParser(prog="sglang serve", exit_on_error=False)
    parser.add_argument("--model-path", "--model", required=True)
    parser.add_argument("--tp-size", "--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--moe-a2a-backend", choices=["none", "deepep", "mooncake"], default="none")
    parser.add_argument("--mamba-radix-cache-strategy", choices=["auto", "no_buffer", "extra_buffer"], default="auto")
    parser.add_argument("--enable-dp-attention", action="store_true")
    monkeypatch.setattr(pf, "_parser", lambda: parser)
    monkeypatch.setattr(pf, "sglang_version", lambda: "9.9")
    return parser


def test_stand_in_accepts_and_reports_what_was_set(stand_in_sglang):
    result = pf.check_sglang_args("org/m", ["--tp-size", "2", "--enable-dp-attention"], where="m/c")
    assert result.sglang_version == "9.9"
    assert result.parsed == {"model_path": "org/m", "tp_size": 2, "enable_dp_attention": True}


@pytest.mark.parametrize(
    ("args", "message", "flag", "value"),
    [
        (
            ["--mamba-scheduler-strategy", "extra_buffer"],
            (
                "m/c: SGLang 9.9 does not accept '--mamba-scheduler-strategy' "
                "(did you mean '--mamba-radix-cache-strategy'?);"
                " `python -m sglang.launch_server --help` lists its flags"
            ),
            "--mamba-scheduler-strategy",
            None,
        ),
        (
            ["--moe-a2a-backend", "deepepp"],
            (
                "m/c: SGLang 9.9 rejects --moe-a2a-backend 'deepepp' (did you mean 'deepep'?); "
                "valid choices: none, deepep, mooncake"
            ),
            "--moe-a2a-backend",
            "deepepp",
        ),
        (
            ["--moe-a2a-backend=mooncak"],
            (
                "m/c: SGLang 9.9 rejects --moe-a2a-backend 'mooncak' (did you mean 'mooncake'?); "
                "valid choices: none, deepep, mooncake"
            ),
            "--moe-a2a-backend",
            "mooncak",
        ),
        (["--tp-size", "two"], "m/c: SGLang 9.9 rejects --tp-size 'two': invalid int value: 'two'", "--tp-size", "two"),
        (["--tp-size"], "m/c: SGLang 9.9 rejects --tp-size: expected one argument", "--tp-size", None),
        (
            ["--zzz", "--tp-sise=2"],
            (
                "m/c: SGLang 9.9 does not accept '--zzz'; also unknown: --tp-sise=2; "
                "`python -m sglang.launch_server --help` lists its flags"
            ),
            "--zzz",
            None,
        ),
        (["stray"], "m/c: SGLang 9.9 takes no positional arguments, got 'stray'", None, "stray"),
    ],
)
def test_stand_in_rejections(stand_in_sglang, args, message, flag, value):
    with pytest.raises(pf.PreflightError) as caught:
        pf.check_sglang_args("org/m", args, where="m/c")
    assert (str(caught.value), caught.value.flag, caught.value.value) == (message, flag, value)
    assert isinstance(caught.value, ConfigError) and caught.value.sglang_version == "9.9"


def test_ambiguous_abbreviation_is_rejected(stand_in_sglang):
    stand_in_sglang.add_argument("--tp-rank", type=int)
    with pytest.raises(pf.PreflightError, match="ambiguous option: --tp could match --tp-size, --tp-rank"):
        pf.check_sglang_args("org/m", ["--tp", "2"])


def test_sglang_preflight_checks_the_model_path_before_the_parser(monkeypatch):
    monkeypatch.setattr(pf, "_parser", lambda: pytest.fail("the parser must not be reached"))
    with pytest.raises(ConfigError, match="is not a directory"):
        get_engine("sglang").preflight(ServerSpec("m", "c", "/no/such/model"))


def test_sglang_preflight_is_skipped_without_sglang(monkeypatch):
    monkeypatch.setattr(pf, "sglang_importable", lambda: False)
    assert get_engine("sglang").preflight(ServerSpec("m", "c", "org/m", args=("--no-such-flag",))) is None


def test_preflight_cli_without_sglang(capsys, monkeypatch):
    monkeypatch.setattr(pf, "sglang_importable", lambda: False)
    assert pf.main(["--model-path", "org/m", "--", "--tp-size", "2"]) == pf.EXIT_NO_SGLANG


def test_preflight_cli_rejection_and_acceptance(stand_in_sglang, capsys, monkeypatch):
    monkeypatch.setattr(pf, "sglang_importable", lambda: True)
    assert pf.main(["--model-path", "org/m", "--where", "m/c", "--", "--tp-sise", "2"]) == pf.EXIT_REJECTED
    out, err = capsys.readouterr()
    assert "did you mean '--tp-size'?" in err and '"ok": false' in out
    assert pf.main(["--model-path", "org/m", "--", "--tp-size", "2"]) == 0
    assert '"tp_size": 2' in capsys.readouterr().out


def test_raising_parser_is_a_real_argparse_parser():
    assert issubclass(pf._RaisingParser, argparse.ArgumentParser)
