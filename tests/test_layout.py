"""The layout stays true: the import-linter contract (pyproject.toml) holds and fails on a wrong import, no import
cycle, at most 8 levels of imports, no module over 400 lines, ruff clean, thresholds.schema.json current."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("harness", "hf_engine", "canary")
MAX_LEVELS = 8  # modules on the longest import chain, the importer and the leaf included
MAX_LINES = 400


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's CLI on the packages under `root`, with `root`'s pyproject.toml."""
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=root,
        env={"PATH": str(BIN), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contract_holds():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 4 kept, 0 broken." in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """A copy of the packages where the config layer imports the report: the contract names the offending line."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    metrics = tmp_path / "harness" / "config" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\nimport harness.report.results  # a deliberately wrong import\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Contracts: 3 kept, 1 broken." in done.stdout
    assert "harness.config is not allowed to import harness.report" in done.stdout
    assert "harness.config.metrics -> harness.report.results" in done.stdout


def _graph(package: str):
    graph = grimp.build_graph(package, cache_dir=None)
    return graph, {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    _, imports = _graph(package)
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(module):  # Tarjan's strongly connected components
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for target in imports[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(imports):
        if module not in index:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize("package", PACKAGES)
def test_import_chains_are_at_most_eight_levels(package):
    _, imports = _graph(package)
    longest: dict[str, list[str]] = {}

    def chain(module: str) -> list[str]:
        if module not in longest:
            below = [chain(target) for target in imports[module] if target != module]
            longest[module] = [module, *max(below, key=len, default=[])]
        return longest[module]

    deepest = max((chain(m) for m in sorted(imports)), key=len)
    assert len(deepest) <= MAX_LEVELS, " -> ".join(deepest)


def test_no_module_over_400_lines():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True)
    long = {}
    for name in tracked.stdout.split():
        path = REPO / name
        if path.is_file() and (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES:
            long[name] = lines
    assert long == {}


def test_ruff_lint_and_format_are_clean():
    lint = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run([str(BIN / "ruff"), "format", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout


def test_the_committed_json_schema_is_current():
    from harness.config.schema import SCHEMA_FILE, json_schema_text

    committed = (REPO / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == json_schema_text(), "thresholds.schema.json is stale: run `python -m harness schema`"
    assert (
        (REPO / "thresholds.yaml")
        .read_text(encoding="utf-8")
        .startswith(f"# yaml-language-server: $schema={SCHEMA_FILE}\n")
    )


def test_every_first_party_name_import_resolves():
    """`from harness.x import name` names something x has (a moved function leaves no stale import behind)."""
    import ast
    import importlib.util

    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True)
    missing = []
    for name in tracked.stdout.split():
        tree = ast.parse((REPO / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            if node.module.split(".")[0] not in PACKAGES:
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name) and importlib.util.find_spec(f"{node.module}.{alias.name}") is None:
                    missing.append(f"{name}:{node.lineno}: {node.module} has no {alias.name}")
    assert missing == []
