"""The contract between suites, evals and the report (after openai/simple-evals `types.py`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.client.http import Client
from harness.errors import ConfigError, did_you_mean


@dataclass(slots=True)
class EvalContext:
    """What an eval gets: a client for the server under test and the knobs thresholds.yaml set for it."""

    client: Client
    case_id: str
    server_info: Mapping[str, Any]
    options: Mapping[str, Any]
    model_path: str
    tokenizer_path: str | None = None
    base_dir: str = "."
    limit: int | None = None
    smoke: bool = False
    on_sample: Callable[[dict], None] = lambda record: None
    # A second engine serving the same weights (the HF reference), started on demand by `hf_parity`.
    reference: Callable[[], Client] | None = None

    def option(self, key: str, default: Any) -> Any:
        return self.options.get(key, default)


@dataclass(slots=True)
class EvalResult:
    """One suite's outcome on one server: the metrics judged against references plus context.

    `metrics` holds the values thresholds.yaml references can name; `details` holds what helps a human
    read the result (hit rates, where the worst token was) and is reported but never judged.
    """

    suite: str
    metrics: dict[str, float]
    n: int
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    # Per-unit values of metrics judged by a test over units (a shift: one value per prompt), by metric name.
    units: dict[str, list[float]] = field(default_factory=dict)
    # Lines for a human beside the verdicts (e.g. the first disagreeing samples); reported, never judged.
    notes: list[str] = field(default_factory=list)


def check_options(suite: str, options: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    """Reject suite options the eval does not read, with a did-you-mean."""
    for key in options:
        if key not in known:
            raise ConfigError(
                f"{suite}: unknown option {key!r}{did_you_mean(key, known)}; valid choices: {', '.join(sorted(known))}"
            )
