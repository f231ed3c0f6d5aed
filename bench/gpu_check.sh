#!/usr/bin/env bash
# The GPU check: one command for a CUDA machine, under 8 minutes, that writes
# bench/results/gpu_check.json (precision auto -> bf16, GPT-2-small MFU eager and compiled,
# 1 vs 2 GPU DDP where two exist, QLoRA, KV-cache generation; bench/gpu_check.py says how).
# The README's GPU figures come from this file only, with the GPU it names.
#   bash bench/gpu_check.sh            # PYTHON=... to pick the interpreter
# Without CUDA it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing to check."
  exit 0
fi
# SIGINT first: the checks done so far are already in the JSON.
exec timeout --signal=INT --kill-after=20 470 "$PYTHON" bench/gpu_check.py "$@"
