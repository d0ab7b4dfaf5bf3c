"""Dataset loading shared by the evals: the real hub dataset through `datasets`, or a local JSON/JSONL file.

The same loader reads the real data set and the canary files because both use the real schema. Hub loads
honour `HF_HUB_OFFLINE` / `HF_DATASETS_OFFLINE` (the `datasets` library reads them itself).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from harness.errors import ConfigError


def load_records(source: str, split: str, *, subset: str | None = None, base_dir: str | Path = ".") -> list[dict]:
    """Records of `split` from a hub dataset id (`openai/gsm8k`), a local directory holding `<split>.jsonl`
    (the canary's layout, mirroring the hub's splits), or a single local .jsonl/.json file."""
    local = Path(base_dir, source) if not Path(source).is_absolute() else Path(source)
    if local.is_dir():
        files = [local / f"{split}.jsonl", local / f"{split}.json"]
        found = next((f for f in files if f.exists()), None)
        if found is None:
            present = sorted(p.stem for p in local.glob("*.json*"))
            raise ConfigError(
                f"{local}: no {split}.jsonl for split {split!r}; splits present: {', '.join(present) or 'none'}"
            )
        return _read_json_records(found)
    if local.suffix in (".jsonl", ".json") or local.exists():
        if not local.exists():
            raise ConfigError(f"data file not found: {local} (from source {source!r})")
        return _read_json_records(local)
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError(
            f"loading {source!r} from the hub needs the `datasets` package (pip install datasets), "
            "or give a local .jsonl path instead"
        ) from exc
    return [dict(row) for row in datasets.load_dataset(source, subset, split=split)]


def _read_json_records(path: Path) -> list[dict]:
    text = path.read_bytes()
    if path.suffix == ".json":
        data = orjson.loads(text)
        return list(data if isinstance(data, list) else data["data"])
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{lineno}: not valid JSON: {exc}") from exc
    return records


def stable_subsample(items: list[Any], limit: int | None, key=lambda item: repr(item)) -> list[Any]:
    """The first `limit` items by a content hash: the same subset on every machine and in any input order."""
    if limit is None or limit >= len(items):
        return list(items)
    ranked = sorted(range(len(items)), key=lambda i: hashlib.sha256(key(items[i]).encode()).hexdigest())
    return [items[i] for i in sorted(ranked[:limit])]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
