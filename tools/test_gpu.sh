#!/usr/bin/env bash
# Run the GPU tests: the one command for a GPU machine, network or not.
#
#   bash tools/test_gpu.sh [PYTEST_ARGS ...]          # or: make test-gpu
#
# $PYTHON (default python3) is a Python with CUDA PyTorch, numpy and opencv.
# When $CONVSEG_WHEELS (default .whl/pyXY/, as tools/download_gpu_wheels.sh
# fills it for that Python's version) is there, its wheels are installed without network or dependency
# resolution (pip install --no-index --no-deps --target) into target-pyXY/
# beside it (.whl/target-pyXY/), reused while the wheels stay the same, and
# that folder
# and the repository go first on PYTHONPATH. Without the folder, $PYTHON must
# already have convseg's dependencies (e.g. .venv/bin/python after
# tools/install.sh). Then `pytest -m gpu` runs tests/gpu and lists every
# skipped test with its reason (no CUDA, no native bf16, no NCCL, fewer GPUs
# than a test needs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tag=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
wheels=${CONVSEG_WHEELS:-.whl/py$tag}
target=$(dirname "$wheels")/target-py$tag
repo=$(pwd)

if [ -d "$wheels" ]; then
    stamp="$target/.installed-from"
    inputs=$(ls "$wheels" | sha1sum | cut -c1-40)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$inputs" ]; then
        echo "[test-gpu] installing $(ls "$wheels" | wc -l) wheels from $wheels into $target"
        rm -rf "$target"
        "$PY" -m pip install --disable-pip-version-check --quiet --no-index \
            --no-deps --target "$target" "$wheels"/*.whl
        echo "$inputs" > "$stamp"
    fi
    export PYTHONPATH="$(cd "$target" && pwd):$repo${PYTHONPATH:+:$PYTHONPATH}"
    # report (without stopping) a dependency neither the image nor the
    # wheels provide, e.g. opencv-python when the image has the headless one
    "$PY" -m pip check --disable-pip-version-check >/dev/null 2>&1 \
        || "$PY" -m pip check --disable-pip-version-check | sed 's/^/[test-gpu] pip check: /' || true
else
    echo "[test-gpu] no $wheels: using the packages $PY already has"
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
fi
# (pytest's header says torch's version, CUDA's and the GPU count:
# tests/gpu/conftest.py; a separate interpreter for it took 4 s of imports)
exec "$PY" -m pytest -m gpu -v -rs tests/gpu "$@"
