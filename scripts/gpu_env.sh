#!/usr/bin/env bash
# Source this: makes `import sglang` work on a GPU machine, also one without internet.
#
#   source scripts/gpu_env.sh      (then python3 -m pytest suites ..., or python3 scripts/cache_sensitivity.py ...)
#
# If `import sglang` fails, the offline kit in $HARNESS_SGLANG_KIT (default gpu/kit, built on a machine with
# PyPI by `bash ../shared/tools/sglang-gpu-kit/build.sh gpu/kit`) is installed into a temp site dir first.
# Extra wheels the harness needs and the machine lacks can sit in $HARNESS_WHEELS (default gpu/wheels).
kit=${HARNESS_SGLANG_KIT:-gpu/kit}
wheels=${HARNESS_WHEELS:-gpu/wheels}
py=${PYTHON:-python3}
if ! "$py" -c "import sglang" 2>/dev/null; then
    if [ ! -f "$kit/install.sh" ]; then
        echo "sglang is not importable and no kit at $kit (build one with sglang-gpu-kit/build.sh)" >&2
        return 2 2>/dev/null || exit 2
    fi
    site_line=$(bash "$kit/install.sh" | tail -n 1)
    export PYTHONPATH="${site_line#PYTHONPATH=}${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -d "$wheels" ] && compgen -G "$wheels/*.whl" >/dev/null; then
    extra=$("$py" -c 'import tempfile; print(tempfile.gettempdir())')/harness-site
    "$py" -m pip install -q --no-index --no-deps --no-compile --target "$extra" "$wheels"/*.whl
    export PYTHONPATH="$PYTHONPATH:$extra"
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
"$py" -c "import sglang; print('sglang', sglang.__version__)"
