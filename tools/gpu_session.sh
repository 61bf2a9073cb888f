#!/usr/bin/env bash
# The whole GPU session in one command, within about 13 minutes, each figure
# printed as soon as it is measured (a run cut short keeps what it reached):
#
#   bash tools/download_gpu_wheels.sh --lean      # here, with network, once
#   bash tools/gpu_session.sh                     # there, on the GPU machine
#
# In order, each step under its own time limit:
# 1. the two training-speed tests not yet confirmed on a GPU
#    (tests/gpu/test_train_speed_cuda.py), 240 s;
# 2. the rest of the GPU suite (bash tools/test_gpu.sh), 300 s;
# 3. tools/benchmark_gpu.py on UPerNet-ConvNeXt-T 512x512, batch 8 (median of
#    5 after 2 warm-ups), the rows not yet measured first, until 780 s in all.
# Logs and the figures' JSON go to $OUT (default gpu_session/). $PYTHON
# (default python3) is the Python with CUDA PyTorch; the lean wheels
# ($CONVSEG_WHEELS, default .whl/lean3XY/) are installed by tools/test_gpu.sh.
# On a machine without a CUDA GPU it says so and exits 0, running nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tag=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
# one interpreter both says whether CUDA is usable and describes torch; the
# description is printed last, after any warning of the CUDA check
if ! torch_info=$("$PY" -c 'import sys, torch
usable = torch.cuda.is_available()
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}")
sys.exit(not usable)' 2>&1 | tail -1); then
    echo "[gpu-session] skipped: no CUDA GPU here ($torch_info)"
    exit 0
fi
export CONVSEG_WHEELS=${CONVSEG_WHEELS:-.whl/lean$tag}
export PYTHONUNBUFFERED=1
out=${OUT:-gpu_session}
mkdir -p "$out"
start=$SECONDS
left() { echo $((780 - (SECONDS - start))); }

echo "[gpu-session] 1/3 the unconfirmed training-speed tests"
timeout 240 bash tools/test_gpu.sh -k test_train_speed_cuda 2>&1 | tee "$out/train_speed.log"
echo "[gpu-session] step 1 exit ${PIPESTATUS[0]} at $((SECONDS - start)) s"

echo "[gpu-session] 2/3 the GPU suite"
timeout 300 bash tools/test_gpu.sh -k 'not test_train_speed_cuda' 2>&1 | tee "$out/suite.log"
echo "[gpu-session] step 2 exit ${PIPESTATUS[0]} at $((SECONDS - start)) s"

echo "[gpu-session] 3/3 the benchmark rows ($(left) s left)"
target=$(dirname "$CONVSEG_WHEELS")/target-py$tag
export PYTHONPATH="$(pwd)/$target:$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
timeout "$(left)" "$PY" tools/benchmark_gpu.py --repeat 5 --warmup 2 \
    --variants reference-fp16 fp16 bf16 fp32+compile bf16+cl+fused \
    bf16+cl+fused+compile fp16+cp@16 fp16+cp+fpn_cp@16 curve:fp32 \
    curve:bf16 curve:bf16+cl+fused curve:fp16 curve:bf16+cl+fused+compile \
    infer-fp32 infer-bf16 infer-bf16+compile \
    --json "$out/benchmark_gpu.json" 2>&1 | tee "$out/benchmark.log" \
    | grep --line-buffered -E '^\[(done|left out)\]|^machine|throughput|Error'
echo "[gpu-session] step 3 exit ${PIPESTATUS[0]} at $((SECONDS - start)) s"
