"""GPU detection (CUDA_VISIBLE_DEVICES, a fake nvidia-smi on PATH, torch) and the disjoint allocator."""

from __future__ import annotations

import os
import stat
import sys
import types

import pytest

from harness.errors import ConfigError
from harness.serve.gpus import (
    GpuAllocator,
    NotEnoughGpus,
    cuda_visible_devices,
    detect_gpus,
    parse_gpu_option,
)

SMI_ROWS = "0, NVIDIA H200, 143771\n1, NVIDIA H200, 143771\n2, NVIDIA H200, 143771\n3, NVIDIA H200, 143771\n"


@pytest.fixture
def no_gpu_path(tmp_path):
    """A PATH with no nvidia-smi on it."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return str(empty)


@pytest.fixture
def fake_smi_path(tmp_path):
    """A PATH whose nvidia-smi prints four H200s for the query the harness sends (and fails otherwise)."""
    bin_dir = tmp_path / "smi-bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--query-gpu=index,name,memory.total" ]; then\n'
        f"  printf '{SMI_ROWS}'\n  exit 0\nfi\nexit 9\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(bin_dir)


@pytest.fixture
def no_torch_gpus(monkeypatch):
    """torch present (the CPU build in CI) or absent: either way it must report no GPU here."""
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False, device_count=lambda: 0))
    monkeypatch.setitem(sys.modules, "torch", fake)


def test_cuda_visible_devices_wins(fake_smi_path):
    inventory = detect_gpus({"PATH": fake_smi_path, "CUDA_VISIBLE_DEVICES": "2,3"})
    assert inventory.ids == ("2", "3") and inventory.source == "CUDA_VISIBLE_DEVICES"
    assert inventory.names == ("NVIDIA H200", "NVIDIA H200")  # looked up by index in nvidia-smi's answer


@pytest.mark.parametrize(
    ("value", "ids"), [("", ()), ("-1", ()), ("0,-1,1", ("0",)), ("GPU-ab12,GPU-cd34", ("GPU-ab12", "GPU-cd34"))]
)
def test_cuda_visible_devices_follows_cudas_rules(no_gpu_path, value, ids):
    assert detect_gpus({"PATH": no_gpu_path, "CUDA_VISIBLE_DEVICES": value}).ids == ids


def test_nvidia_smi_when_no_mask(fake_smi_path):
    inventory = detect_gpus({"PATH": fake_smi_path})
    assert inventory.ids == ("0", "1", "2", "3") and inventory.source == "nvidia-smi"
    assert inventory.memory_mib == (143771,) * 4
    assert inventory.as_dict()["names"] == ["NVIDIA H200"] * 4


def test_torch_is_the_last_resort(no_gpu_path, monkeypatch):
    fake = types.SimpleNamespace(
        cuda=types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 2, get_device_name=lambda i: f"G{i}")
    )
    monkeypatch.setitem(sys.modules, "torch", fake)
    inventory = detect_gpus({"PATH": no_gpu_path})
    assert (inventory.ids, inventory.source, inventory.names) == (("0", "1"), "torch", ("G0", "G1"))


def test_nothing_found(no_gpu_path, no_torch_gpus):
    inventory = detect_gpus({"PATH": no_gpu_path})
    assert inventory.ids == () and inventory.source == "none" and len(inventory) == 0


def test_a_failing_nvidia_smi_counts_as_none(tmp_path, no_torch_gpus):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    os.chmod(bin_dir / "nvidia-smi", 0o755)
    assert detect_gpus({"PATH": str(bin_dir)}).source == "none"


def test_harness_gpus_option(fake_smi_path, no_gpu_path, no_torch_gpus):
    assert parse_gpu_option("0,1,2,3") == ["0", "1", "2", "3"]
    assert parse_gpu_option(" 4, 5 ") == ["4", "5"]
    assert parse_gpu_option("2,") == ["2"]
    assert parse_gpu_option("2", {"PATH": fake_smi_path}) == ["0", "1"]  # a count: the first detected ids
    assert parse_gpu_option("2", {"PATH": fake_smi_path, "CUDA_VISIBLE_DEVICES": "6,7"}) == ["6", "7"]
    assert parse_gpu_option("4", {"PATH": no_gpu_path}) == ["0", "1", "2", "3"]  # none detected: trust the count
    assert parse_gpu_option("0") == [] and parse_gpu_option("") == []
    assert parse_gpu_option(None, {"PATH": fake_smi_path, "CUDA_VISIBLE_DEVICES": "1"}) == ["1"]


@pytest.mark.parametrize(("value", "problem"), [("0,0", "listed twice"), ("0,gpu1", "'gpu1' is not a GPU id")])
def test_bad_harness_gpus_option(value, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_gpu_option(value)


def test_allocator_hands_out_disjoint_sets_and_reuses_released_ones():
    allocator = GpuAllocator(["0", "1", "2", "3"])
    first = allocator.allocate(2, "qwen/tp2")
    second = allocator.allocate(2, "llama/tp2")
    assert first == ("0", "1") and second == ("2", "3")
    with pytest.raises(NotEnoughGpus, match=r"mtp/tp1 needs 1 GPU\(s\); 0 free, the rest held by 0:qwen/tp2"):
        allocator.allocate(1, "mtp/tp1")
    allocator.release(first)
    with allocator.lease(1, "mtp/tp1") as leased:
        assert leased == ("0",) and allocator.free == ["1"]
    assert allocator.free == ["0", "1"]
    assert cuda_visible_devices(second) == {"CUDA_VISIBLE_DEVICES": "2,3"}


def test_a_config_needing_more_gpus_than_exist_is_skipped_with_the_reason():
    allocator = GpuAllocator(["0", "1"])
    assert allocator.skip_reason(2, "qwen/tp2") is None
    reason = allocator.skip_reason(8, "deepseek/ep8")
    assert reason == (
        "deepseek/ep8 needs 8 GPU(s) but only 2 are available (0,1); "
        "set --harness-gpus or CUDA_VISIBLE_DEVICES to use more"
    )
    with pytest.raises(NotEnoughGpus) as caught:
        allocator.allocate(8, "deepseek/ep8")
    assert caught.value.reason == reason
    assert (
        GpuAllocator([])
        .skip_reason(1, "x/tp1")
        .endswith("only 0 are available (none); set --harness-gpus or CUDA_VISIBLE_DEVICES to use more")
    )
