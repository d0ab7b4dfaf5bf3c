#!/usr/bin/env bash
# Downloads the pure-Python wheels the harness needs on the lent GPU image beside the SGLang kit: it has pyarrow,
# pandas, fsspec, xxhash and huggingface_hub, but not `datasets` (the MMMU and Video-MME loaders) or its
# `multiprocess` (dill comes with the kit). scripts/gpu_env.sh installs whatever is in gpu/wheels.
#
#   bash scripts/gpu_wheels.sh [OUTDIR]      (default gpu/wheels; carry it with gpu/kit)
set -euo pipefail
out=${1:-gpu/wheels}
mkdir -p "$out"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform any -d "$out" datasets==5.2.0 multiprocess==0.70.18
du -sh "$out"
