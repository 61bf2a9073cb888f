#!/usr/bin/env bash
# Set up convseg in a virtual environment at .venv (or $CONVSEG_VENV).
#
#   bash tools/install.sh [--tests | --bench]
#
# - creates the venv if it is missing;
# - installs torch==2.13.0 only when no torch is importable (bring your own
#   CUDA build first on a GPU machine: this script never replaces it);
# - picks the mmcv flavour: keeps a full mmcv that is already installed (it has
#   the compiled ops), otherwise installs mmcv-lite. Both live in the same
#   `mmcv` folder, so installing one over the other breaks it; that is why the
#   flavour is an extra, chosen here, and not a plain dependency;
# - installs convseg in editable mode, with the test, deploy and openvino
#   extras on --tests (the deploy tests run in the suite; openvino and nncf
#   add about 30 s to a fresh install), and transformers beside the venv
#   (see below);
# - writes convseg's start-up hook (convseg/mmcv_ops_hook.py) into the venv's
#   site-packages. pip cannot place a .pth file for an editable install, so
#   this script does it; `python -m convseg.mmcv_ops_hook` does the same.
# --bench makes a second venv, .venv-bench (or $CONVSEG_BENCH_VENV), for
# tools/benchmark.py --reference: torch==2.14.1 with torchvision==0.29.1
# (mmpretrain, whose ConvNeXt is mmseg's reference backbone, imports
# torchvision, which does not import beside torch 2.13 CPU; 2.14.1 is a CUDA
# build of about 5.5 GB that also runs on CPU), mmpretrain and convseg with
# its deploy and openvino extras (the --onnx and --openvino rows beside the
# reference).
# Re-running is cheap: a stamp file records the inputs it was run with.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CONVSEG_VENV:-.venv}
TRANSFORMERS=5.17.0
EXTRAS=""
[ "${1:-}" = "--tests" ] && EXTRAS="tests,deploy,openvino"
if [ "${1:-}" = "--bench" ]; then
    VENV=${CONVSEG_BENCH_VENV:-.venv-bench}
    EXTRAS="bench,deploy,openvino"
fi

stamp="$VENV/.convseg-install-$EXTRAS"
inputs=$(cat setup.cfg pyproject.toml tools/install.sh | sha1sum | cut -c1-40)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
    exit 0
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
PIP="$PY -m pip --disable-pip-version-check -q"

# uv resolves and installs the same packages as pip in seconds instead of
# minutes (a fresh --tests install: about 50 s on a loaded 2-vCPU Xeon, against
# about 3.5 min with pip on the AMD EPYC). It is itself
# a pip-installable wheel; where it cannot be had, pip does the work. uv does
# not read pip's configuration, so the index, find-links and constraint
# settings pip sees (pip.conf and PIP_* variables) are handed over as flags.
# CONVSEG_NO_UV=1 keeps plain pip.
if [ -z "${CONVSEG_NO_UV:-}" ] && { [ -x "$VENV/bin/uv" ] || $PIP install uv >/dev/null 2>&1; }; then
    uv_flags=(--python "$PY" -q)
    while IFS= read -r line; do
        key=${line%%=*}; key=${key##*.}
        value=${line#*=}; value=${value#\'}; value=${value%\'}
        case "$key" in
            index-url) uv_flags+=(--index-url "$value") ;;
            extra-index-url) for v in $value; do uv_flags+=(--extra-index-url "$v"); done ;;
            find-links) for v in $value; do uv_flags+=(--find-links "$v"); done ;;
            constraint) for v in $value; do uv_flags+=(--constraint "$v"); done ;;
        esac
    done < <("$PY" -m pip config list 2>/dev/null)  # (-q would hide the list)
    PIP_INSTALL=("$VENV/bin/uv" pip install "${uv_flags[@]}")
else
    PIP_INSTALL=($PIP install)
fi

if [ "$EXTRAS" = "bench,deploy,openvino" ]; then
    echo "[install] torch==2.14.1 torchvision==0.29.1 into $VENV (about 5.5 GB)"
    "${PIP_INSTALL[@]}" torch==2.14.1 torchvision==0.29.1
elif ! "$PY" -c "import torch" 2>/dev/null; then
    echo "[install] torch not found: installing torch==2.13.0 (CPU build)"
    "${PIP_INSTALL[@]}" torch==2.13.0
fi

if $PIP show mmcv >/dev/null 2>&1; then
    flavour=""
    echo "[install] full mmcv found: keeping it (convseg works with or without its compiled ops)"
else
    flavour="lite"
fi

extras=$(printf '%s\n' $flavour $EXTRAS | paste -sd, -)
echo "[install] pip install -e .${extras:+[$extras]}"
"${PIP_INSTALL[@]}" -e ".${extras:+[$extras]}"
if [ "$EXTRAS" = "tests,deploy,openvino" ]; then
    # transformers (the tests compare our ConvNeXt with Hugging Face's) goes
    # to $VENV/transformers, which only the test processes put on sys.path
    # (tests/conftest.py): mmengine imports transformers at start-up when it
    # can, 2.3 s of every fresh tool process here; its dependencies come with
    # the tests extra
    if "$PY" -c "import transformers" 2>/dev/null; then
        echo "[install] moving transformers out of $VENV's site-packages"
        $PIP uninstall -y transformers
    fi
    echo "[install] transformers==$TRANSFORMERS into $VENV/transformers"
    rm -rf "$VENV/transformers"
    "${PIP_INSTALL[@]}" --no-deps --target "$VENV/transformers" \
        "transformers==$TRANSFORMERS"
fi
# bytecode for everything installed: uv writes none by default, and where
# PYTHONDONTWRITEBYTECODE is set (as on our CI machines) Python never caches
# it either, so each new process compiled torch, mmengine and mmseg again:
# `import convseg.apis, mmengine.runner` took 14.3 s against 5.1 s with the
# .pyc files (2-vCPU AMD EPYC Zen 3). About 25 s once, here. The packages'
# own test folders are left out (nothing imports them), and files that do not
# compile (a few packages ship Python 2 test data) are skipped, which costs
# only their bytecode.
echo "[install] compiling the venv's Python files to bytecode"
site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$PY" -m compileall -qq -j 0 -x '/tests?/' "$site" \
    $([ -d "$VENV/transformers" ] && echo "$VENV/transformers") || true
# a start-up hook so that processes which never import convseg (mmseg's own
# tools, `from mmseg.apis import init_model`) import mmseg on mmcv-lite too
"$PY" -c "from convseg.mmcv_ops_hook import main; main()"
echo "$inputs" > "$stamp"
