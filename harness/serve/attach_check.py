"""Attach mode: is the server at --harness-base-url the one the config declares?

A config's args say what it tests (tp 2, page 16, EAGLE3); an attached server was launched by someone else, so
nothing guarantees it was launched with them. Before any suite of an attached config, `compare_server` reads
what the server reports (`/server_info`, `/model_info`) against the config's declared args, read as SGLang's
argparse reads them (`flag_value`), and a flag the config leaves out counts as SGLang's default. A difference
fails every test of the config with one line (`ServerMismatch`); a field the server does not report is listed as
unchecked (in results.json's server entry and each test's notes).

Fields with no default here are compared only where the config sets them, because SGLang derives them itself
when they are left out: `ep_size` (DeepEP sets it to tp_size), the Mamba strategy (`auto` resolves per model),
`dtype` (`auto` resolves from the checkpoint), `enable_multimodal` (on for multimodal architectures). The model
is compared by its directory's name (a remote server loads its own copy from its own path; a hub cache's
`models--org--name/snapshots/<hash>` counts as `name`). A config whose suites send images needs a server whose
`/model_info` says `has_image_understanding: true`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from harness.config.spec import ServerSpec
from harness.errors import HarnessError
from harness.serve.engines.flags import flag_value

_UNSET = object()


class ServerMismatch(HarnessError):
    """The attached server is not what the config declares; `detail` is the line without the config's id."""

    def __init__(self, spec_id: str, detail: str):
        super().__init__(f"{spec_id}: {detail}")
        self.detail = detail


def _spec_algorithm(value: Any) -> str:
    text = "none" if value is None else str(value).strip().upper()
    return {"NEXTN": "EAGLE", "NONE": "none", "": "none"}.get(text, text)  # SGLang runs NEXTN as EAGLE


def _dtype(value: Any) -> str:
    text = str(value).strip().lower().removeprefix("torch.")
    return {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}.get(
        text, text
    )


def _integer(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _boolean(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value if value is None else bool(value)


@dataclass(frozen=True)
class Field:
    """One compared server arg: the flags that set it, SGLang's default (`_UNSET`: compared only when declared),
    the keys /server_info reports it under (old names after new), and one spelling per value."""

    name: str
    flags: tuple[str, ...]
    default: Any = _UNSET
    served_keys: tuple[str, ...] = ()
    normalize: Callable[[Any], Any] = _integer
    switch: bool = False  # a store_true flag: declared True when present

    def declared(self, args: Sequence[str]) -> Any:
        """The value the args give, or `_UNSET` when they leave the flag out."""
        if self.switch:
            return True if any(a in self.flags for a in args) else _UNSET
        value = flag_value(args, *self.flags)
        return _UNSET if value is None else value

    @property
    def keys(self) -> tuple[str, ...]:
        return self.served_keys or (self.name,)


FIELDS = (
    Field("tp_size", ("--tp-size", "--tensor-parallel-size"), 1),
    Field("dp_size", ("--dp-size", "--data-parallel-size"), 1),
    Field("pp_size", ("--pp-size", "--pipeline-parallel-size"), 1),
    Field("ep_size", ("--ep-size", "--expert-parallel-size")),
    Field("page_size", ("--page-size",), 1),
    Field("speculative_algorithm", ("--speculative-algorithm", "--speculative-algo"), None, normalize=_spec_algorithm),
    Field(
        "mamba_radix_cache_strategy",
        ("--mamba-radix-cache-strategy", "--mamba-scheduler-strategy"),  # the old name, still accepted in 0.5.17
        served_keys=("mamba_radix_cache_strategy", "mamba_scheduler_strategy"),
        normalize=lambda v: str(v).lower(),
    ),
    Field("dtype", ("--dtype",), normalize=_dtype),
    Field("disable_radix_cache", ("--disable-radix-cache",), False, normalize=_boolean, switch=True),
    Field("enable_multimodal", ("--enable-multimodal",), normalize=_boolean, switch=True),
)


@dataclass
class AttachCheck:
    """What was compared: the differing fields as 'name declared X, served Y', the fields that matched, and the
    fields the server does not report."""

    spec_id: str
    differences: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        return "attached server differs from the config: " + "; ".join(self.differences)

    @property
    def note(self) -> str:
        """The note every test of the config carries when some field could not be compared."""
        if not self.unchecked:
            return ""
        return f"attached server: not reported, so not compared with the config: {', '.join(self.unchecked)}"

    def record(self) -> dict[str, Any]:
        return {"checked": self.checked, "unchecked": self.unchecked, "differences": self.differences}

    def raise_for_differences(self) -> None:
        if self.differences:
            raise ServerMismatch(self.spec_id, self.line)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _served(info: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in info:
            return info[key]
    return _UNSET


def model_name(path: str) -> str:
    """The name a model path compares by: its last directory, or `name` of a hub cache's snapshot directory."""
    parts = [p for p in PurePosixPath(str(path).replace("\\", "/")).parts if p not in ("/", ".")]
    for part in reversed(parts):
        if part.startswith("models--"):
            return part.split("--")[-1].lower()
    return parts[-1].lower() if parts else ""


def compare_server(spec: ServerSpec, info: Mapping[str, Any], model_info: Mapping[str, Any]) -> AttachCheck:
    """The config's declared args (SGLang's defaults where it leaves a flag out) against what the server reports.

    A deployment's config args are shared by members that add their own, so only what the config sets is compared.
    """
    check = AttachCheck(spec.id)
    for f in FIELDS:
        declared, by_default = f.declared(spec.args), ""
        if declared is _UNSET:
            if f.default is _UNSET or spec.deployment is not None:
                continue
            declared, by_default = f.default, " (the default)"
        served = _served(info, f.keys)
        served = served if served is _UNSET else f.normalize(served)
        _compare(check, f.name, f.normalize(declared), served, by_default)
    if spec.model_path:
        served_path = _served({**model_info, **info}, ("model_path",))
        if served_path is _UNSET:
            check.unchecked.append("model_path")
        elif model_name(served_path) == model_name(spec.model_path):
            check.checked.append("model_path")
        else:
            check.differences.append(f"model_path declared {spec.model_path}, served {served_path}")
    if spec.images_per_prompt:
        _compare(check, "has_image_understanding", True, _served(model_info, ("has_image_understanding",)))
    return check


def _compare(check: AttachCheck, name: str, declared: Any, served: Any, by_default: str = "") -> None:
    if served is _UNSET:
        check.unchecked.append(name)
    elif declared == served:
        check.checked.append(name)
    else:
        check.differences.append(f"{name} declared {_shown(declared)}{by_default}, served {_shown(served)}")
