#!/usr/bin/env bash
# One batched validation run on a lent GPU machine (the `device` tool), its report brought back under $OUT.
#
#   bash scripts/gpu_validation.sh NAME [pytest args]     e.g.  bash scripts/gpu_validation.sh h100-canary -k "canary and tp1"
#
# Runs scripts/gpu_run.sh (installs the offline SGLang kit when `import sglang` fails) with the report in
# reports/NAME/<run id>/, then copies into $OUT/NAME/: machine.txt (GPU, driver, Python, wall time, exit
# status; the commit, marked +dirty where the copied tree differs from it, is in summary.md), pytest.log, summary.md, results.json and run.tar.gz (the whole run dir: logs, samples, junit).
# Five files: the device tool brings back at most 8, at most 2 folders down.
set -uo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: gpu_validation.sh NAME [pytest args]}
shift
out=${OUT:-reports/out}/$name
mkdir -p "$out"
started=$(date +%s)
{
    echo "date: $(date -u +%FT%TZ)"
    echo "gpus: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | paste -sd ';')"
    echo "python: $(python3 --version 2>&1)"
    echo "command: bash scripts/gpu_validation.sh $name $*"
} >"$out/machine.txt" 2>&1
# matplotlib builds its font cache on its first import, which on a fresh machine came at the session's end (the HTML
# report's plots) and ran past the run's limit after every test had passed (2026-12-02, h200-perf4): build it
# now, while the servers start, and reap it below.
"${PYTHON:-python3}" -c "import matplotlib.font_manager" >/dev/null 2>&1 &
font_cache=$!
# SIGINT, not SIGTERM: pytest then tears the servers down and the partial report is already on disk.
timeout -s INT -k 60 "${HARNESS_RUN_TIMEOUT:-540}" bash scripts/gpu_run.sh --harness-report-dir "reports/$name" "$@" 2>&1 | tee "$out/pytest.log"
status=${PIPESTATUS[0]}
kill "$font_cache" 2>/dev/null; wait "$font_cache" 2>/dev/null
run=$(ls -d "reports/$name"/*/ 2>/dev/null | tail -n 1)
if [ -n "$run" ]; then
    cp "$run/summary.md" "$run/results.json" "$out/" 2>/dev/null
    tar czf "$out/run.tar.gz" -C "$run" .
fi
echo "wall_s: $(($(date +%s) - started))  exit: $status" >>"$out/machine.txt"
exit "$status"
