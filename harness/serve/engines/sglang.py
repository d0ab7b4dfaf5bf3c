"""The SGLang engine: `python -m sglang.launch_server ...` plus one helper per parallel/speculative config kind.

The config args come from thresholds.yaml as a list of strings; the helpers below build the same lists in
code (tests, scripts) so that every kind the product must cover has one spelling, checked against SGLang's
real parser by `harness.serve.engines.preflight`. Flag names are SGLang's (python/sglang/srt/server_args.py and,
from 0.5.20, sglang/srt/arg_groups/fields/*.py); every helper's output parses on 0.5.17 and 0.5.23.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.config.spec import ServerSpec
from harness.errors import ConfigError, unknown_choice
from harness.serve.engines.base import Engine, check_model_path
from harness.serve.engines.flags import flag_value

EAGLE_ALGORITHMS = ("EAGLE", "EAGLE3")
# 0.5.23's choices; 0.5.17 has the same four. no_buffer/extra_buffer are what the suites exercise.
MAMBA_STRATEGIES = ("auto", "no_buffer", "extra_buffer", "extra_buffer_lazy")


@dataclass(frozen=True)
class SGLangEngine(Engine):
    name: str = "sglang"
    label: str = "sglang"
    health_path: str = "/health_generate"  # 503 until the first generation works
    startup_timeout: float = 600.0  # DEFAULT_TIMEOUT_FOR_SERVER_LAUNCH in sglang/test/test_utils.py

    def command(self, spec: ServerSpec, host: str, port: int) -> list[str]:
        cmd = [self.python, "-m", "sglang.launch_server", "--model-path", spec.model_path]
        if spec.tokenizer_path:
            cmd += ["--tokenizer-path", spec.tokenizer_path]
        return [*cmd, "--host", host, "--port", str(port), *spec.args]

    def preflight(self, spec: ServerSpec):
        """Model path check, then the installed SGLang's own parser (skipped when sglang is not importable)."""
        check_model_path(spec)
        from harness.serve.engines.preflight import check_sglang_args, sglang_importable

        if not sglang_importable():
            return None
        return check_sglang_args(spec.model_path, spec.args, where=spec.id)

    def gpus_needed(self, spec: ServerSpec) -> int:
        if flag_value(spec.args, "--device") in ("cpu", "xpu", "hpu", "npu"):  # SGLang's non-CUDA backends
            return spec.gpus
        return max(spec.gpus, gpus_for_args(spec.args))


@dataclass(frozen=True)
class SGLangRouterEngine(Engine):
    """`python -m sglang_router.launch_router` (pip sglang-router), the front of a pd deployment: its args come
    from harness.serve.deployment (`--pd-disaggregation --mini-lb --prefill URL PORT --decode URL`)."""

    name: str = "sglang-router"
    label: str = "sglang-router"
    health_path: str = "/health"
    requires_server_info: bool = False

    def command(self, spec: ServerSpec, host: str, port: int) -> list[str]:
        return [self.python, "-m", "sglang_router.launch_router", *spec.args, "--host", host, "--port", str(port)]

    def preflight(self, spec: ServerSpec):
        return None  # its flags are the deployment's own wiring; sglang-router is not in the parser environments


# -- one helper per config kind; each returns the args to append ------------------------------------------


def _positive(name: str, value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return str(value)


def tp(n: int) -> list[str]:
    """Tensor parallelism over n GPUs."""
    return ["--tp-size", _positive("tp", n)]


def dp(n: int) -> list[str]:
    """n data-parallel replicas (each with its own TP group)."""
    return ["--dp-size", _positive("dp", n)]


def pp(n: int) -> list[str]:
    """Pipeline parallelism over n stages."""
    return ["--pp-size", _positive("pp", n)]


def ep_dp_attention(ep: int, dp: int, a2a: str = "deepep") -> list[str]:
    """Expert parallelism with DP attention and an all-to-all MoE backend (DeepEP by default).

    Spelled `--dp-size N --enable-dp-attention`, which both 0.5.17 and 0.5.23 accept; 0.5.23 marks
    `--enable-dp-attention` deprecated in favour of `--attn-dp-size N` (which 0.5.17 lacks) and the
    preflight reports that warning.
    """
    return [
        "--ep-size",
        _positive("ep", ep),
        "--dp-size",
        _positive("dp", dp),
        "--enable-dp-attention",
        "--moe-a2a-backend",
        a2a,
    ]


def eagle(draft_path: str, steps: int, topk: int, num_draft_tokens: int, algorithm: str = "EAGLE") -> list[str]:
    """EAGLE or EAGLE3 speculative decoding with a separate draft model."""
    if algorithm not in EAGLE_ALGORITHMS:
        raise unknown_choice("EAGLE algorithm", algorithm, EAGLE_ALGORITHMS, where="eagle()")
    if not draft_path:
        raise ConfigError("eagle(): draft_path is empty; EAGLE needs --speculative-draft-model-path")
    return [
        "--speculative-algorithm",
        algorithm,
        "--speculative-draft-model-path",
        draft_path,
        *_spec_shape(steps, topk, num_draft_tokens),
    ]


def mtp(steps: int, topk: int, num_draft_tokens: int, draft_path: str | None = None) -> list[str]:
    """Multi-token prediction (NEXTN): the model's own MTP layers draft; a draft path is optional."""
    args = ["--speculative-algorithm", "NEXTN"]
    if draft_path:
        args += ["--speculative-draft-model-path", draft_path]
    return [*args, *_spec_shape(steps, topk, num_draft_tokens)]


def _spec_shape(steps: int, topk: int, num_draft_tokens: int) -> list[str]:
    return [
        "--speculative-num-steps",
        _positive("steps", steps),
        "--speculative-eagle-topk",
        _positive("topk", topk),
        "--speculative-num-draft-tokens",
        _positive("num_draft_tokens", num_draft_tokens),
    ]


def ngram(num_draft_tokens: int) -> list[str]:
    """N-gram speculative decoding (no draft model)."""
    return [
        "--speculative-algorithm",
        "NGRAM",
        "--speculative-num-draft-tokens",
        _positive("num_draft_tokens", num_draft_tokens),
    ]


def mamba(strategy: str = "extra_buffer", track_interval: int | None = None) -> list[str]:
    """Hybrid-Mamba radix cache strategy (the 0.5.20+ name; 0.5.17 accepts it too).

    `no_buffer` does not support the overlap scheduler (SGLang asserts at startup), so this adds
    `--disable-overlap-schedule` for it.
    """
    if strategy not in MAMBA_STRATEGIES:
        raise unknown_choice("mamba radix cache strategy", strategy, MAMBA_STRATEGIES, where="mamba()")
    args = ["--mamba-radix-cache-strategy", strategy]
    if track_interval is not None:
        args += ["--mamba-track-interval", _positive("track_interval", track_interval)]
    if strategy == "no_buffer":
        args.append("--disable-overlap-schedule")
    return args


def page_size(n: int) -> list[str]:
    """KV/radix cache page size in tokens."""
    return ["--page-size", _positive("page_size", n)]


# -- reading args back -------------------------------------------------------------------------------------

_SIZE_FLAGS = {
    "tp": ("--tp-size", "--tensor-parallel-size"),
    "dp": ("--dp-size", "--data-parallel-size"),
    "pp": ("--pp-size", "--pipeline-parallel-size"),
}


def gpus_for_args(args: Sequence[str]) -> int:
    """GPUs a launch line occupies: tp*pp, times dp unless DP attention runs the replicas inside the TP group.

    A malformed size is counted as 1 and left for the preflight to report.
    """
    sizes = {}
    for key, names in _SIZE_FLAGS.items():
        value = flag_value(args, *names)
        sizes[key] = int(value) if value and value.isdigit() else 1
    dp_attention = "--enable-dp-attention" in args or flag_value(args, "--attn-dp-size") is not None
    replicas = 1 if dp_attention else sizes["dp"]
    return sizes["tp"] * sizes["pp"] * replicas
