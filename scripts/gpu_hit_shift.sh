#!/usr/bin/env bash
# hit_shift on a lent GPU (issue 35 item 4): canary/tp1's cache suites clean and with a 0.02-nat hit-only shift,
# REPEATS runs of 32 prompts per launch, LAUNCHES launches; each launch's JSON lands in $OUT/launchN as it ends.
#
#   bash scripts/gpu_hit_shift.sh [LAUNCHES] [REPEATS]      (device tool, carry gpu/kit; from the repo root)
#   python scripts/rejudge_hit_shift.py $OUT                (the table: failures per min_effect)
set -uo pipefail
cd "$(dirname "$0")/.."
launches=${1:-2}; repeats=${2:-10}; out=${OUT:-reports/hit-shift}
mkdir -p "$out"
source scripts/gpu_env.sh > "$out/env.log" 2>&1 || { cat "$out/env.log"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"
for l in $(seq 1 "$launches"); do
  start=$(date +%s)
  python3 scripts/cache_sensitivity.py --out "$out/launch$l" --configs canary/tp1 --shifts 0 0.02 \
      --set-size 32 --repeats "$repeats" > "$out/launch$l.log" 2>&1
  echo "launch $l rc=$? wall=$(( $(date +%s) - start ))s"; tail -n 4 "$out/launch$l.log"
done
