#!/usr/bin/env bash
# Train with one process per GPU on this machine, through torchrun:
#   bash tools/dist_train.sh CONFIG GPUS [tools/train.py options]
# e.g. bash tools/dist_train.sh configs/upernet_convnext_t_ade20k.py 8
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on each.
# Without GPUs the processes train on the CPU with the gloo backend.
# Python: $PYTHON if set, else the project's .venv, else `python` on PATH.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash $0 CONFIG GPUS [tools/train.py options]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
# shellcheck source=tools/python_env.sh
source "$(dirname "$0")/python_env.sh"

PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$GPUS" \
    "$TOOLS/train.py" "$CONFIG" --launcher pytorch "${@:3}"
