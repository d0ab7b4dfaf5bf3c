"""Install each pinned SGLang release, without its GPU stack, into its own `--target` dir for the preflight tests.

    python tests/sglang_env/install_sites.py DEST            # DEST/0.5.17, DEST/0.5.23; prints HARNESS_SGLANG_SITES

Only SGLang's argument parser is used, so `pip install --no-deps` skips flashinfer, sglang-kernel, CUDA torch
and the rest; the light packages the parser imports come from requirements.txt (installed into the venv).
Where a release pins a version that differs between releases (0.5.17 imports transformers 5.12.1, openai
2.6.1 and xgrammar 0.2.1 at module level, and torchvision), that pin goes --no-deps into the release's own
dir, which shadows the venv. 0.5.17 also gets `torchvision_cpu_shim.py` as its sitecustomize (why: there).
A dir that already holds the right sglang version is left alone, so reruns cost nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PINS: dict[str, list[str]] = {
    "0.5.17": [
        "transformers==5.12.1",
        "tokenizers>=0.22.0,<=0.23.0",
        "openai==2.6.1",
        "xgrammar==0.2.1",
        "torchvision==0.28.0",
    ],
    "0.5.23": [],
}


def install(dest: Path, version: str) -> None:
    site = dest / version
    if (site / f"sglang-{version}.dist-info").is_dir():
        print(f"sglang {version}: already in {site}")
        return
    if site.exists():
        shutil.rmtree(site)  # a half-finished earlier attempt
    started = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        str(site),
        f"sglang=={version}",
        *PINS[version],
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    if version == "0.5.17":
        shutil.copy(HERE / "torchvision_cpu_shim.py", site / "sitecustomize.py")
    print(f"sglang {version}: installed in {time.monotonic() - started:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--versions", nargs="+", default=list(PINS), choices=list(PINS))
    args = parser.parse_args()
    for version in args.versions:
        install(args.dest, version)
    sites = os.pathsep.join(f"{v}={(args.dest / v).resolve()}" for v in args.versions)
    print(f"HARNESS_SGLANG_SITES={sites}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
