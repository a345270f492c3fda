#!/usr/bin/env bash
# One of the three trainings on WORLD = GPUS x NODES processes started by torchrun, through
# fairseq's own distributed training (see README.md beside this file).
#
#   examples/distributed/torchrun.sh STAGE DATA SAVE_DIR [fairseq-train flags ...]
#
# STAGE: pretrain (DATA: manifests), bert (DATA: units), am (DATA: manifests + labels). Flags
# given after SAVE_DIR come last and win over the stage's. Environment: DEVICE (gpu, default, or
# cpu), GPUS (processes per node: one per GPU, default 8), NODES (default 1), NODE_RANK (this
# node, 0 .. NODES - 1, default 0), MASTER (the address of node 0, default localhost), PORT
# (default 29500), DRY_RUN=1 prints the command instead of running it.
#
#   examples/distributed/torchrun.sh pretrain runs/librispeech/manifests runs/vq/gumbel
#   # two nodes of 8 GPUs: the same line on each, NODE_RANK=0 on host0 and NODE_RANK=1 on the other
#   NODES=2 NODE_RANK=0 MASTER=host0 examples/distributed/torchrun.sh bert runs/units/gumbel runs/bert
#   # CPU, 2 processes on this machine (gloo)
#   DEVICE=cpu GPUS=2 examples/distributed/torchrun.sh am runs/wsj/manifests runs/am
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 3 ] || { echo "usage: $0 STAGE DATA SAVE_DIR [fairseq-train flags ...]" >&2; exit 2; }
source examples/distributed/stages.sh
STAGE=$1 DATA=$2 SAVE=$3  # after lib.sh, which has a DATA of its own
shift 3
DEVICE=${DEVICE:-gpu}
NODE_RANK=${NODE_RANK:-0}
stage_flags "$STAGE" "$DEVICE"
if [ "$DEVICE" = cpu ]; then
  # fairseq reads torchrun's RANK/WORLD_SIZE only where it finds GPUs (it divides by their count):
  # on CPU it is told env:// itself, and rank -1 lets torch take each process's RANK
  FLAGS+=(--distributed-init-method env:// --distributed-rank -1 --distributed-no-spawn)
fi
run torchrun --nnodes "$NODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS" \
  --master_addr "$MASTER" --master_port "$PORT" "$(command -v fairseq-train || echo fairseq-train)" \
  "$DATA" "${FLAGS[@]}" --save-dir "$SAVE" --distributed-world-size "$WORLD" "$@"
