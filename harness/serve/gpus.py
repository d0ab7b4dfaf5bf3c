"""Which GPUs this run may use, and a disjoint set of them for each server (through CUDA_VISIBLE_DEVICES).

Detection order: `--harness-gpus` (ids "0,1,2,3" or a count "4"), then CUDA_VISIBLE_DEVICES when set (a
scheduler such as Slurm already chose for us), then `nvidia-smi`, then torch when importable. The ids handed
out are the parent's device ids (physical indices or UUIDs as CUDA_VISIBLE_DEVICES spelled them), because a
child's CUDA_VISIBLE_DEVICES is read against the physical devices, not against the parent's mask.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from harness.errors import ConfigError, HarnessError

NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]


class NotEnoughGpus(HarnessError):
    """A server needs more GPUs than are free; `reason` is the pytest skip reason when it needs more than exist."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class GpuInventory:
    """The GPUs found, where the answer came from, and (when nvidia-smi or torch said) their names."""

    ids: tuple[str, ...]
    source: str
    names: tuple[str, ...] = ()
    memory_mib: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    def as_dict(self) -> dict:
        return {
            "ids": list(self.ids),
            "source": self.source,
            "names": list(self.names),
            "memory_mib": list(self.memory_mib),
        }


def detect_gpus(env: Mapping[str, str] | None = None) -> GpuInventory:
    """GPUs visible to this process: CUDA_VISIBLE_DEVICES, else nvidia-smi, else torch, else none."""
    env = os.environ if env is None else env
    smi = _query_nvidia_smi(env)
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = _parse_visible_devices(env["CUDA_VISIBLE_DEVICES"])
        names = _names_for(ids, smi) if smi else ()
        return GpuInventory(ids=ids, source="CUDA_VISIBLE_DEVICES", names=names)
    if smi is not None:
        return smi
    return _query_torch() or GpuInventory(ids=(), source="none")


def parse_gpu_option(value: str | None, env: Mapping[str, str] | None = None) -> list[str]:
    """`--harness-gpus`: None = detect; "0,1,2,3" = those ids; "4" = a count (the first 4 detected ids,
    or 0..3 when detection finds fewer: the user knows better); "2," = only GPU 2; "0" or "" = no GPUs."""
    if value is None:
        return list(detect_gpus(env).ids)
    text = str(value).strip()
    if text.isdigit():
        count = int(text)
        detected = detect_gpus(env).ids
        return list(detected[:count]) if len(detected) >= count else [str(i) for i in range(count)]
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--harness-gpus {value!r}: a GPU id is listed twice")
    for gpu in ids:
        if not (gpu.isdigit() or gpu.startswith(("GPU-", "MIG-"))):
            raise ConfigError(
                f"--harness-gpus {value!r}: {gpu!r} is not a GPU id; give ids like '0,1,2,3' "
                "(or GPU-/MIG- UUIDs) or a count like '4'"
            )
    return ids


def cuda_visible_devices(ids: Sequence[str]) -> dict[str, str]:
    """The environment that gives a child exactly these GPUs ('' hides them all)."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(ids)}


@dataclass
class GpuAllocator:
    """Hands each server a disjoint set of GPU ids; released sets are reused (lowest ids first)."""

    ids: Sequence[str]
    _owner: dict[str, str] = field(default_factory=dict)

    @property
    def free(self) -> list[str]:
        return [gpu for gpu in self.ids if gpu not in self._owner]

    def skip_reason(self, needed: int, what: str) -> str | None:
        """Why `what` can never run here (it needs more GPUs than exist), or None."""
        if needed <= len(self.ids):
            return None
        have = ",".join(self.ids) or "none"
        return (
            f"{what} needs {needed} GPU(s) but only {len(self.ids)} are available ({have}); "
            "set --harness-gpus or CUDA_VISIBLE_DEVICES to use more"
        )

    def allocate(self, needed: int, owner: str) -> tuple[str, ...]:
        reason = self.skip_reason(needed, owner)
        if reason:
            raise NotEnoughGpus(reason)
        free = self.free
        if needed > len(free):
            busy = ", ".join(f"{gpu}:{who}" for gpu, who in self._owner.items())
            raise NotEnoughGpus(f"{owner} needs {needed} GPU(s); {len(free)} free, the rest held by {busy}")
        chosen = tuple(free[:needed])
        for gpu in chosen:
            self._owner[gpu] = owner
        return chosen

    def release(self, ids: Sequence[str]) -> None:
        for gpu in ids:
            self._owner.pop(gpu, None)

    @contextlib.contextmanager
    def lease(self, needed: int, owner: str) -> Iterator[tuple[str, ...]]:
        chosen = self.allocate(needed, owner)
        try:
            yield chosen
        finally:
            self.release(chosen)


def _parse_visible_devices(value: str) -> tuple[str, ...]:
    """CUDA's rule: entries up to the first invalid one (e.g. '-1', which hides everything after it)."""
    ids: list[str] = []
    for part in value.split(","):
        part = part.strip()
        if not part or part.startswith("-"):
            break
        ids.append(part)
    return tuple(ids)


def _query_nvidia_smi(env: Mapping[str, str]) -> GpuInventory | None:
    try:
        out = subprocess.run(
            NVIDIA_SMI_QUERY,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:  # installed but no driver / no device
        return None
    rows = [[cell.strip() for cell in line.split(",")] for line in out.stdout.splitlines() if line.strip()]
    rows = [row for row in rows if len(row) >= 3 and row[0].isdigit()]
    return GpuInventory(
        ids=tuple(row[0] for row in rows),
        source="nvidia-smi",
        names=tuple(row[1] for row in rows),
        memory_mib=tuple(int(row[2]) if row[2].isdigit() else 0 for row in rows),
    )


def _names_for(ids: tuple[str, ...], smi: GpuInventory) -> tuple[str, ...]:
    by_index = dict(zip(smi.ids, smi.names))
    return tuple(by_index[gpu] for gpu in ids if gpu in by_index) if all(g in by_index for g in ids) else ()


def _query_torch() -> GpuInventory | None:
    """Last resort (no nvidia-smi, e.g. some containers); imported only here because torch is slow to load."""
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return None
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return None
    names = tuple(torch.cuda.get_device_name(i) for i in range(count))
    return GpuInventory(ids=tuple(str(i) for i in range(count)), source="torch", names=names)


def gpu_model(inventory: GpuInventory) -> str:
    """The model of the first GPU as perf references name it: "NVIDIA H200" -> "H200", "NVIDIA A100-SXM4-80GB" ->
    "A100"; "cpu" when there is none, "unknown" when no name was reported."""
    if not inventory.ids:
        return "cpu"
    if not inventory.names:
        return "unknown"
    words = [w for w in inventory.names[0].replace("-", " ").split() if w.upper() not in ("NVIDIA", "GEFORCE", "TESLA")]
    return words[0] if words else "unknown"
