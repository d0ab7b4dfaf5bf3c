"""thresholds.yaml's schema: pydantic models of models, configs, deployments, reference entries and error control.

`python -m harness schema` writes thresholds.schema.json from these models (editors complete and check the file
with it; CI fails when the committed schema is stale). Cross-field rules live in harness.config.checks.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator

from harness.config.metrics import DEFAULT_ALPHA, metric_info

Engine = Literal["sglang", "hf", "vllm"]
BOUND_KEYS = ("max", "min", "min_ratio", "max_ratio")


def _stringify(value: Any) -> Any:
    """SGLang's own tests write `"--tp", 4`; accept numbers in args and env, as the shell would."""
    scalar = (int, float)
    if isinstance(value, list):
        return [str(v) if isinstance(v, scalar) and not isinstance(v, bool) else v for v in value]
    if isinstance(value, dict):
        return {k: str(v) if isinstance(v, scalar) and not isinstance(v, bool) else v for k, v in value.items()}
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberConfig(_Strict):
    """One process of a deployment: its role, the args it adds to the config's, its GPUs (indices into the
    config's), its environment."""

    role: str
    args: list[str] = []
    gpus: list[NonNegativeInt] = []
    env: dict[str, str] = {}

    _coerce = field_validator("args", "env", mode="before")(_stringify)


class DeploymentConfig(_Strict):
    kind: str
    members: list[MemberConfig] = Field(min_length=1)


class ConfigSpec(_Strict):
    args: list[str] = []
    gpus: int = Field(0, ge=0)
    suites: list[str]
    engine: Engine | None = None
    env: dict[str, str] = {}
    options: dict[str, dict[str, Any]] = {}
    startup_timeout: float | None = Field(None, gt=0)
    description: str = ""
    deployment: DeploymentConfig | None = None

    _coerce = field_validator("args", "env", mode="before")(_stringify)


class ModelSpec(_Strict):
    path: str = Field(min_length=1)
    tokenizer: str | None = None
    engine: Engine = "sglang"
    dtype: str | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    description: str = ""
    startup_timeout: float | None = Field(None, gt=0)
    options: dict[str, dict[str, Any]] = {}
    configs: dict[str, ConfigSpec] = Field(min_length=1)
    # The config every other config of this model is held to, question by question, at the end of a run
    # (harness.report.compare.cross_config): parallelism and backends must not change answers. A list: the first of
    # them that the run has (e.g. [cpu, tp1]: the CPU engine in the main job, tp1 in a GPU run).
    reference_config: list[str] = []


class Match(_Strict):
    dtype: str | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    speculative_algorithm: str | None = None
    # The GPU model the run is on (harness.serve.gpus.gpu_model: "H200", "H100", "cpu" without one): perf references
    # hold for one GPU model; an entry without it matches any.
    gpu: str | None = None

    def describe(self) -> str:
        keys = self.model_dump(exclude_none=True)
        return "{" + ", ".join(f"{k}: {v}" for k, v in keys.items()) + "}" if keys else "{} (any)"


class ReferenceEntry(_Strict):
    metric: str
    value: float | None = None
    n: int | None = Field(None, ge=1)
    sigma: float | None = Field(None, ge=0)
    alpha: float | None = Field(None, gt=0, lt=1)
    beta: float | None = Field(None, gt=0, lt=1)
    higher_is_better: bool | None = None
    max: float | None = None
    min: float | None = None
    min_ratio: float | None = Field(None, gt=0)
    max_ratio: float | None = Field(None, gt=0)
    min_effect: float | None = Field(None, ge=0)
    match: Match = Match()
    provenance: str = Field(min_length=1)
    # The reference run's answers question by question (harness.config.per_question), relative to thresholds.yaml:
    # a limited run is then judged on the same questions, paired (harness.verdict.subset).
    per_question: str | None = Field(None, min_length=1)

    @property
    def kind(self) -> str:
        """'shift' (a metric tested against 0), 'statistical', or the bound key: 'max', 'min', 'min_ratio',
        'max_ratio'."""
        if metric_info(self.metric).shift:
            return "shift"
        return next((k for k in BOUND_KEYS if getattr(self, k) is not None), "statistical")

    @property
    def pending(self) -> bool:
        """True for an entry that exists but whose value was not measured yet (`value: null`)."""
        return self.value is None and self.kind in ("statistical", "min_ratio", "max_ratio")


class ErrorControl(_Strict):
    """thresholds.yaml `error_control:`: α per gate, or one α for the run (harness.verdict.error_control)."""

    scope: Literal["gate", "run"] = "gate"
    alpha: float = Field(DEFAULT_ALPHA, gt=0, lt=1)  # the run's family-wise α (scope run)


class ThresholdsDoc(_Strict):
    models: dict[str, ModelSpec]
    references: dict[str, dict[str, list[ReferenceEntry]]] = {}
    error_control: ErrorControl = ErrorControl()


SCHEMA_FILE = "thresholds.schema.json"  # beside thresholds.yaml; its first line points editors at it


def json_schema_text() -> str:
    """thresholds.schema.json's exact text: the JSON Schema of ThresholdsDoc (`python -m harness schema` writes
    it; tests/test_layout.py fails when the committed file differs)."""
    import json

    from harness.config.metrics import METRICS
    from harness.config.suites import SUITES

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **ThresholdsDoc.model_json_schema()}
    schema["title"] = "thresholds.yaml of the SGLang validation harness"
    definitions = schema["$defs"]
    # the registries' names, so an editor completes them and flags a typo before any run does
    definitions["ConfigSpec"]["properties"]["suites"]["items"]["enum"] = sorted(SUITES)
    definitions["ReferenceEntry"]["properties"]["metric"]["enum"] = sorted(METRICS)
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
