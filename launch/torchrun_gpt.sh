#!/usr/bin/env bash
# Several machines with torchrun: the same command on every machine, each with its own
# NODE_RANK (0 on the one whose address is MASTER_ADDR, reachable from all of them).
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash launch/torchrun_gpt.sh   # machine 0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 bash launch/torchrun_gpt.sh   # machine 1
# CONFIG (default the FSDP GPT), GPUS (default: all of the machine's), MASTER_PORT (29500);
# arguments after the script go to `main.py fit` (e.g. --trainer.max_steps=1000).
# TORCHRUN: how to call torchrun (default `torchrun`). tests/test_multinode.py runs this file
# as two "machines" on 127.0.0.1, one CPU process each (gloo).
set -euo pipefail
: "${NNODES:?set NNODES, the number of machines}"
: "${NODE_RANK:?set NODE_RANK, 0 .. NNODES-1, different on each machine}"
: "${MASTER_ADDR:?set MASTER_ADDR, the address of machine 0}"
HERE=$(dirname "$0")
CONFIG=${CONFIG:-$HERE/../configs/gpt_wikitext2_fsdp.yaml}
GPUS=${GPUS:-$(nvidia-smi --list-gpus | wc -l)}
# shellcheck disable=SC2086  # TORCHRUN may be a command with arguments
exec ${TORCHRUN:-torchrun} --nnodes "$NNODES" --nproc_per_node "$GPUS" --node_rank "$NODE_RANK" \
  --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}" \
  "$HERE/../main.py" fit --config "$CONFIG" --trainer.num_nodes="$NNODES" --trainer.devices="$GPUS" "$@"
