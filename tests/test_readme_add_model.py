"""The README's "Add a model" section, followed literally: its three commands run in order in a copy of the project
root, on the CPU reference engine: `python -m harness init` writes the model (the YAML block the section shows,
verbatim) and its references not measured yet, `--harness-update-thresholds` measures them, and the last run is
gated against them."""

from __future__ import annotations

import re
import shlex
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


def user_project(root: Path) -> Path:
    """The project root as a user has it: suites, assets and conftest from the repo, thresholds.yaml a copy."""
    for name in ("suites", "assets"):
        (root / name).symlink_to(REPO / name)
    for name in ("conftest.py", "pyproject.toml", "thresholds.yaml"):
        shutil.copy(REPO / name, root / name)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return user_project(tmp_path)


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "harness"] or argv[0] == "pytest", command
    extra = ["-p", "no:cacheprovider"] if argv[0] == "pytest" else []
    argv = [sys.executable, "-m", *argv[2:]] if argv[0] == "python" else [sys.executable, "-m", *argv, *extra]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900)


def test_the_readme_adds_a_model_end_to_end(project: Path):
    blocks, commands = add_model_section()
    assert len(blocks) == 1 and len(commands) == 3, (blocks, commands)
    thresholds = project / "thresholds.yaml"
    scaffold, update, gate = commands

    scaffolded = run(scaffold, project)
    assert scaffolded.returncode == 0, scaffolded.stderr[-3000:]
    assert blocks[0] in thresholds.read_text(encoding="utf-8")  # what the README says init writes
    entry = yaml.safe_load(thresholds.read_text(encoding="utf-8"))["references"]["gsm8k"]["my-model"][0]
    assert (entry["value"], entry["n"], entry["provenance"]) == (None, None, "not measured yet")

    before = run(f"{gate} --harness-limit 5", project)  # not measured yet: fails, naming the command of step 2
    assert before.returncode == 1
    assert 'measure and write it from a full run: pytest suites -k "test_gsm8k[my-model/cpu]"' in before.stdout

    updated = run(update, project)
    assert updated.returncode == 0, updated.stdout[-3000:]
    entry = yaml.safe_load(thresholds.read_text(encoding="utf-8"))["references"]["gsm8k"]["my-model"][0]
    assert entry["n"] == 200 and 0.9 <= entry["value"] <= 1.0, entry
    assert entry["sigma"] == float(f"{(entry['value'] * (1 - entry['value']) * 200 / 199) ** 0.5:.3g}"), entry
    assert entry["provenance"].startswith("measured ") and "run " in entry["provenance"], entry

    gated = run(gate, project)
    assert gated.returncode == 0, gated.stdout[-3000:]
    line = f"gsm8k[my-model/cpu]: accuracy {entry['value']:.3f} ≥ floor"
    assert line in gated.stdout, gated.stdout[-3000:]
    assert "(ref 0.995, n=200, σ=0.0707, " in gated.stdout  # what the README's last line shows
