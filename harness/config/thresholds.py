"""thresholds.yaml: the model × config matrix to serve, and the references every suite is judged by.

The file holds data only (no templating). `models` maps a name to what to load and its `configs`
(SGLang server args, GPUs, suites, per-suite knobs). `references` maps suite → model → a list of
entries; the first entry whose `match` fits the config's numerics wins. Numerics are what can move
scores — dtype, quantization, KV-cache dtype, speculative algorithm — and never parallelism: every
TP/DP/EP/PP config of a model must meet the same reference, because a gap there is a bug
(TensorRT-LLM keys its references the same way). A key left out of `match` matches any value, so
specific entries go first; an entry that an earlier one always shadows is rejected.

An entry is either statistical (`value`, `n`, `sigma`: the floor is derived in harness.verdict.statistics)
or a plain bound (`max`, `min`, or `min_ratio`/`max_ratio` of a measured `value`). `value: null`
marks a reference not measured yet: the suite then fails asking for a measurement, which
`--harness-update-thresholds` writes into that entry (harness.config.update).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config.checks import Numerics, config_numerics, matches, model_problems, reference_problems
from harness.config.per_question import per_question_problems
from harness.config.schema import ConfigSpec, DeploymentConfig, ModelSpec, ReferenceEntry, ThresholdsDoc
from harness.config.spec import DeploymentSpec, MemberSpec, ServerSpec
from harness.config.suites import SUITES, suite_option_defaults
from harness.config.templates import update_command
from harness.config.yaml_errors import Loc, Span, describe_validation_error, read_yaml
from harness.errors import ConfigError, NoReferenceError, unknown_choice

KNOWN_SUITES = SUITES  # the registry lives in harness.config.suites; this name is what the plugin imports


# The most images a request of each multimodal suite carries (MMMU questions have up to 7).
IMAGES_PER_PROMPT = {"mmmu": 7, "mmmu_parity": 7, "mm_prefix_cache": 1}


@dataclass(frozen=True)
class ReferenceMatch:
    """The entry chosen for one (suite, model, config), and where it lives in the file."""

    suite: str
    model: str
    config: str
    index: int
    entry: ReferenceEntry
    source: str

    @property
    def path(self) -> str:
        return f"references.{self.suite}.{self.model}[{self.index}]"

    @property
    def test_id(self) -> str:
        return f"{self.suite}[{self.model}/{self.config}]"


@dataclass(frozen=True)
class Thresholds:
    """A validated thresholds.yaml. `source` is the name used in messages; `spans` locate every value."""

    doc: ThresholdsDoc
    path: Path
    source: str
    spans: dict[Loc, Span]
    gpu: str | None = None  # the run's GPU model, set by the session; entries with `match: {gpu}` need it

    def model(self, name: str) -> ModelSpec:
        if name not in self.doc.models:
            raise unknown_choice("model", name, self.doc.models, self.source)
        return self.doc.models[name]

    def config(self, model: str, config: str) -> ConfigSpec:
        configs = self.model(model).configs
        if config not in configs:
            raise unknown_choice("config", config, configs, f"{self.source}: models.{model}.configs")
        return configs[config]

    def numerics(self, model: str, config: str) -> Numerics:
        m = self.model(model)
        return config_numerics(self.config(model, config).args, m.dtype, m.quantization, m.kv_cache_dtype)

    def suite_options(self, model: str, config: str, suite: str) -> dict[str, Any]:
        """The knobs set for a suite: the model's, overridden key by key by the config's."""
        if suite not in SUITES:
            raise unknown_choice("suite", suite, SUITES, self.source)
        return {**self.model(model).options.get(suite, {}), **self.config(model, config).options.get(suite, {})}

    def server_spec(self, model: str, config: str) -> ServerSpec:
        m, c = self.model(model), self.config(model, config)
        base = self.path.parent
        return ServerSpec(
            model=model,
            config=config,
            model_path=resolve_model_path(m.path, base),
            engine=c.engine or m.engine,
            args=resolve_path_args(c.args, base),
            env=dict(c.env),
            gpus=c.gpus,
            tokenizer_path=resolve_model_path(m.tokenizer, base) if m.tokenizer else None,
            startup_timeout=c.startup_timeout if c.startup_timeout is not None else m.startup_timeout,
            images_per_prompt=self.images_per_prompt(model, config),
            deployment=_deployment_spec(c.deployment),
        )

    def images_per_prompt(self, model: str, config: str) -> int:
        """The most images one request of the config's suites sends: fixed per suite, or for video_mme in frames
        mode its `num_frames` (so an engine's per-request image limit can be raised to it)."""
        counts = [IMAGES_PER_PROMPT.get(s, 0) for s in self.config(model, config).suites]
        for suite in ("video_mme", "video_mme_modes", "video_mme_parity"):
            if suite in self.config(model, config).suites:
                opts = {**(suite_option_defaults(suite) or {}), **self.suite_options(model, config, suite)}
                counts.append(opts["num_frames"] if opts.get("mode", "frames") == "frames" else 0)
        return max(counts, default=0)

    def server_specs(self) -> list[ServerSpec]:
        return [self.server_spec(m, c) for m, spec in self.doc.models.items() for c in spec.configs]

    def cases(self, suite: str) -> list[tuple[ServerSpec, dict[str, Any]]]:
        """Every (server, suite options) whose config runs `suite`, in file order."""
        if suite not in SUITES:
            raise unknown_choice("suite", suite, SUITES, self.source)
        return [
            (self.server_spec(model, config), self.suite_options(model, config, suite))
            for model, spec in self.doc.models.items()
            for config, config_spec in spec.configs.items()
            if suite in config_spec.suites
        ]

    def find_reference(self, suite: str, model: str, config: str, metric: str | None = None) -> ReferenceMatch | None:
        """The first entry of references.<suite>.<model> (of `metric`, if given) matching the config's numerics."""
        if suite not in SUITES:
            raise unknown_choice("suite", suite, SUITES, self.source)
        numerics = self.numerics(model, config)
        for index, entry in enumerate(self.doc.references.get(suite, {}).get(model, [])):
            on_this_gpu = entry.match.gpu is None or (self.gpu or "").lower() == entry.match.gpu.lower()
            if (metric is None or entry.metric == metric) and on_this_gpu and matches(entry.match, numerics):
                return ReferenceMatch(suite, model, config, index, entry, self.source)
        return None

    def reference_for(self, suite: str, model: str, config: str, metric: str | None = None) -> ReferenceMatch:
        """Like find_reference, but a missing reference raises NoReferenceError listing the entries that exist."""
        found = self.find_reference(suite, model, config, metric)
        if found is not None:
            return found
        entries = self.doc.references.get(suite, {}).get(model, [])
        what = f"{suite}[{model}/{config}]" + (f" metric {metric}" if metric else "")
        if entries:
            listed = "; ".join(f"[{i}] {e.metric} match {e.match.describe()}" for i, e in enumerate(entries))
            have = f"entries under references.{suite}.{model}: {listed}"
        else:
            have = f"references.{suite} has no entries for model {model!r}"
        raise NoReferenceError(
            f"{self.source}: no reference for {what} ({self.numerics(model, config).describe()}); {have};"
            f" measure and write it from a full run: {update_command(suite, model, config)}"
        )


def _deployment_spec(declared: DeploymentConfig | None):
    if declared is None:
        return None
    members = tuple(MemberSpec(m.role, tuple(m.args), tuple(m.gpus), dict(m.env)) for m in declared.members)
    return DeploymentSpec(declared.kind, members)


# Server flags whose value is a model directory or hub id, resolved like a model's `path`.
PATH_FLAGS = ("--speculative-draft-model-path",)


def resolve_path_args(args, base_dir: Path) -> tuple[str, ...]:
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg in PATH_FLAGS:
            out[i + 1] = resolve_model_path(out[i + 1], base_dir)
    return tuple(out)


def resolve_model_path(path: str, base_dir: Path) -> str:
    """Local directories resolve against the YAML file's folder; `org/name` stays a hub id.

    Local means: absolute, starting with ./ ../ or ~, with two or more slashes, or existing there.
    """
    expanded = os.path.expanduser(path)
    local = (
        os.path.isabs(expanded)
        or path.startswith(("./", "../", "~"))
        or path.count("/") >= 2
        or (base_dir / path).exists()
    )
    return str((base_dir / expanded).resolve()) if local else path


def display_name(path: Path) -> str:
    """The file's name as messages show it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_thresholds(path: str | os.PathLike[str]) -> Thresholds:
    """Read and validate thresholds.yaml; any problem raises one ConfigError naming file, key path and value."""
    path = Path(path)
    source = display_name(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found (looked in {path.resolve().parent})") from None
    return parse_thresholds(text, path, source)


def parse_thresholds(text: str, path: Path, source: str) -> Thresholds:
    try:
        data, spans = read_yaml(text, source)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{_cut_off_hint(text)}") from exc.__cause__
    if _cut_off_hint(text):
        # A partial write (an interrupted copy or edit) cuts mid-line, and a third of such cuts still parse, e.g.
        # `min: 0.985` cut to `min: 0.9`: a silently loosened floor. Every file the harness accepts ends a line.
        line = text.count("\n") + 1
        raise ConfigError(
            f"{source}:{line}: the file ends mid-line ({text.splitlines()[-1][-40:]!r}): was it cut off? "
            "A thresholds file must end with a newline; add one if the file is complete"
        )
    return _validate(data, spans, path, source)


def _cut_off_hint(text: str) -> str:
    return " (the file ends mid-line, without a newline: was it cut off?)" if text and not text.endswith("\n") else ""


def _validate(data, spans, path: Path, source: str) -> Thresholds:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level: expected a mapping with 'models' and 'references', got {data!r:.60}")
    if "models" in data and "references" not in data:
        # Required so that a file cut off anywhere before its references fails here, not as a partial matrix.
        raise ConfigError(
            f"{source}: top level: missing required key 'references' (found only {', '.join(map(repr, data))}); "
            "a file cut off before its references looks like this. To run with no reference yet, write `references: {}`"
        )
    try:
        doc = ThresholdsDoc.model_validate(data)
    except ValidationError as exc:
        raise describe_validation_error(exc, ThresholdsDoc, source) from None
    problems = model_problems(doc, source, SUITES) + reference_problems(doc, source, SUITES)
    problems = problems or per_question_problems(doc, path.parent, source)
    if problems:
        raise ConfigError("\n".join(problems))
    return Thresholds(doc, path, source, spans)
