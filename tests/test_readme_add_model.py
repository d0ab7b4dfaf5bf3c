"""The README's "Add a model" section, followed literally: its two YAML blocks go into a copy of thresholds.yaml as
text (where a user pastes them), then its three commands run in order in a copy of the project root, on the CPU
reference engine. The model gets recorded, its measured values written into the file, then gated."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def add_model_section() -> tuple[list[str], list[str]]:
    """The section's ```yaml blocks and ```bash commands, in order."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Add a model\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    commands = [c.strip() for c in re.findall(r"```bash\n(.*?)```", section, re.S)]
    return blocks, commands


def paste(thresholds: str, models_block: str, references_block: str) -> str:
    """The blocks pasted where they belong: the model first under `models:`, its entries under their suite."""
    model_lines = models_block.split("\n", 1)[1]
    text = thresholds.replace("\nmodels:\n", "\nmodels:\n" + model_lines, 1)
    suites = yaml.safe_load(references_block)["references"]
    for suite in suites:
        entries = references_block.split(f"  {suite}:\n", 1)[1]
        key = f"\n  {suite}:\n"
        at = text.index(key, text.index("\nreferences:\n")) + len(key)
        text = text[:at] + entries + text[at:]
    return text


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The project root as a user has it: suites, assets and conftest from the repo, thresholds.yaml a copy."""
    for name in ("suites", "assets"):
        (tmp_path / name).symlink_to(REPO / name)
    for name in ("conftest.py", "pyproject.toml", "thresholds.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    assert command.startswith("pytest "), command
    argv = [sys.executable, "-m", "pytest", *command.split()[1:], "-p", "no:cacheprovider"]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900)


def test_the_readme_adds_a_model_end_to_end(project: Path):
    blocks, commands = add_model_section()
    assert len(blocks) == 2 and len(commands) == 3, (blocks, commands)
    thresholds = project / "thresholds.yaml"
    thresholds.write_text(paste(thresholds.read_text(encoding="utf-8"), *blocks), encoding="utf-8")
    record, update, gate = commands

    recorded = run(record, project)
    assert recorded.returncode == 0, recorded.stdout[-3000:]
    assert "1 passed" in recorded.stdout

    updated = run(update, project)
    assert updated.returncode == 0, updated.stdout[-3000:]
    entry = yaml.safe_load(thresholds.read_text(encoding="utf-8"))["references"]["gsm8k"]["my-model"][0]
    assert entry["n"] == 200 and 0.9 <= entry["value"] <= 1.0, entry

    gated = run(gate, project)
    assert gated.returncode == 0, gated.stdout[-3000:]
    line = f"gsm8k[my-model/cpu]: accuracy {entry['value']:.3f} ≥ floor"
    assert line in gated.stdout, gated.stdout[-3000:]
    assert "(ref 0.995, n=200, σ=0.5" in gated.stdout  # what the README's last line shows
