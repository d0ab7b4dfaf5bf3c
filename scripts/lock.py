"""Regenerate constraints.txt, the one set of pins the tox envs install under (all but gpu and latest).

    python3 scripts/lock.py              # rewrites constraints.txt (a few minutes: torch, triton, lm-eval, lmms-eval)
    python3 scripts/lock.py --out FILE   # write elsewhere, e.g. to diff against the committed lock

A throwaway venv gets the union of what the tox envs install: torch 2.13.0, the harness with extras hf, data,
bench, report, browser and lmms-eval (editable), tests/sglang_env/requirements.txt, pytest, ruff and import-linter
(the layout test) (lmms-eval brings
torchvision, which the CPU envs leave out, tox.ini: pinned here, never imported). The libraries whose floats went
into the committed canary (torch, transformers, tokenizers, safetensors) are held at the versions recorded in
assets/canary/manifest.json, so the lock reproduces the canary's numbers and the byte-identical rebuild test
can run. The rest resolves to the newest releases pip finds. Output: `pip freeze --all --exclude-editable`
(--all keeps setuptools, which torch and pytablewriter require at run time) less pip itself, sorted, local
version labels dropped (torch 2.13.0+cpu -> 2.13.0, so either wheel satisfies it).

The union is resolved once, so the pins agree across envs: each env installs a subset and only reads the pins
of what it installs. Run it with the Python the tox envs use (python3); the header records which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "assets" / "canary" / "manifest.json"
# The libraries the canary's weights and accuracies depend on (canary.build.library_versions).
CANARY_LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors")
COMMAND = "python3 scripts/lock.py"


def canary_pins(manifest_path: Path = MANIFEST) -> list[str]:
    """`name==version` for each canary library, from the manifest's `versions` (local labels dropped)."""
    versions = json.loads(manifest_path.read_text())["versions"]
    missing = [name for name in CANARY_LIBRARIES if name not in versions]
    if missing:
        raise SystemExit(f"{manifest_path}: versions lacks {missing}; it has {sorted(versions)}")
    return [f"{name}=={public_version(versions[name])}" for name in CANARY_LIBRARIES]


def public_version(version: str) -> str:
    return version.split("+", 1)[0]


def freeze_lines(freeze_output: str) -> list[str]:
    """`pip freeze` lines as pins: comments, blanks and pip dropped, local labels stripped, sorted by name."""
    pins = []
    for line in freeze_output.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "==" not in line:
            raise SystemExit(f"pip freeze gave a line that is not name==version: {line!r}")
        name, version = line.split("==", 1)
        if name.lower() == "pip":  # the installer, never a dependency; tox's virtualenv seeds its own
            continue
        pins.append(f"{name}=={public_version(version)}")
    return sorted(pins, key=lambda pin: re.sub(r"[-_.]+", "-", pin.split("==")[0]).lower())


def header(requirements: list[str], seconds: float) -> list[str]:
    return [
        "# Pins for every tox env except gpu and latest (tox.ini: `-c` in deps, constrain_package_deps).",
        f"# Regenerate: {COMMAND}    (do not edit by hand)",
        f"# Made by resolving in one fresh venv: pip install {' '.join(requirements)}",
        "# then `pip freeze --all --exclude-editable` less pip, sorted, "
        "local labels dropped (torch 2.13.0+cpu -> 2.13.0).",
        "# Canary libraries held at assets/canary/manifest.json's versions: " + ", ".join(CANARY_LIBRARIES) + ".",
        f"# Resolved on Python {platform.python_version()}, {sys.platform} {platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}, in {seconds:.0f} s.",
    ]


def resolve(requirements: list[str], workdir: Path) -> str:
    """Install `requirements` into a new venv under `workdir`; its `pip freeze --all --exclude-editable`."""
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # A lock resolves afresh: a PIP_CONSTRAINT in the caller's environment would pin the result to it.
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}
    subprocess.run([python, "-m", "pip", "install", "--quiet", *requirements], check=True, cwd=ROOT, env=env)
    subprocess.run([python, "-m", "pip", "check"], check=True, env=env)
    freeze = [python, "-m", "pip", "freeze", "--all", "--exclude-editable"]
    return subprocess.run(freeze, check=True, env=env, capture_output=True, text=True).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "constraints.txt")
    args = parser.parse_args()
    requirements = [
        *canary_pins(),
        "-e",
        ".[hf,data,bench,report,browser,lmms-eval]",
        "-r",
        "tests/sglang_env/requirements.txt",
        "pytest",
        "ruff",  # the tests env's layout test (tests/test_layout.py)
        "import-linter",
    ]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="harness-lock-") as tmp:
        pins = freeze_lines(resolve(requirements, Path(tmp)))
    lines = header(requirements, time.monotonic() - started) + pins
    args.out.write_text("\n".join(lines) + "\n")
    print(f"{args.out}: {len(pins)} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
