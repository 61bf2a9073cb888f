#!/usr/bin/env bash
# Download the wheels that tools/test_gpu.sh installs on a GPU node without
# network.
#
#   bash tools/download_gpu_wheels.sh [--lean] [PYTHON_VERSION]   # default 3.12
#
# --lean: tools/gpu_wheels_lean.txt, only what this workplace's CUDA image
# lacks, without dependency resolution, into .whl/lean312/ (small enough to
# travel with the repository to a GPU machine).
#
# Run it from a machine that reaches the package index (any OS: pip is told
# the target). It fills .whl/py312/ (gitignored; .whl/py311/ for 3.11, ...;
# $CONVSEG_WHEELS if set, as for tools/test_gpu.sh) with the CPython
# manylinux x86_64 wheels of tools/gpu_wheels.txt ($CONVSEG_GPU_WHEEL_LIST
# if set): the OpenMMLab stack, convseg's dependencies, mmpretrain and
# pytest, one version each. pip resolves their dependencies while
# downloading, so a dependency missing from the list still comes along.
# What a CUDA PyTorch image already has (torch, numpy, opencv) is left out.
# The folder is replaced only once the download is complete. Copy the
# repository with .whl/ to the GPU node.
set -euo pipefail
cd "$(dirname "$0")/.."
lean=""
if [ "${1:-}" = "--lean" ]; then
    lean=1
    shift
fi
version=${1:-3.12}
if ! [[ $version =~ ^3\.[0-9]+$ ]]; then
    echo "usage: bash tools/download_gpu_wheels.sh [--lean] [PYTHON_VERSION, e.g. 3.12]" >&2
    exit 2
fi
tag=${version/./}
if [ -n "$lean" ]; then
    dest=${CONVSEG_WHEELS:-.whl/lean$tag}
    list=${CONVSEG_GPU_WHEEL_LIST:-tools/gpu_wheels_lean.txt}
else
    dest=${CONVSEG_WHEELS:-.whl/py$tag}
    list=${CONVSEG_GPU_WHEEL_LIST:-tools/gpu_wheels.txt}
fi
tmp=$dest.partial
# provided by the image (pip pulls numpy and opencv-python in as dependencies)
provided='^(torch|numpy|opencv_python|opencv_python_headless|opencv_contrib_python)-'

rm -rf "$tmp"
mkdir -p "$tmp"
${PYTHON:-python3} -m pip download --disable-pip-version-check --quiet \
    --dest "$tmp" --only-binary=:all: \
    --python-version "$version" --implementation cp \
    --abi "cp$tag" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 ${lean:+--no-deps} \
    -r "$list"
for wheel in "$tmp"/*.whl; do
    if [[ $(basename "$wheel") =~ $provided ]]; then
        rm "$wheel"
    fi
done
rm -rf "$dest"
mv "$tmp" "$dest"
count=$(find "$dest" -name '*.whl' | wc -l)
size=$(du -sh "$dest" | cut -f1)
echo "[wheels] $count wheels ($size) for CPython $version manylinux x86_64 in $dest"
