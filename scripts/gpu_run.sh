#!/usr/bin/env bash
# Run the harness against real SGLang on a GPU machine, also one without internet.
#
#   bash scripts/gpu_run.sh [pytest args]      e.g.  bash scripts/gpu_run.sh -k "canary and not cpu"
#
# scripts/gpu_env.sh installs the offline kit when `import sglang` fails (see there), then pytest runs the suites.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh
exec "${PYTHON:-python3}" -m pytest suites -p no:cacheprovider -rs "$@"
