#!/usr/bin/env bash
# Stage 2 (MR) on a CUDA machine: from the pack of the training split (`intersr train pack`,
# train-data/mr.npz: no SimpleITK needed there) and the stage 1 output runs/video.pt.
# Resumable: OUTDIR holds the checkpoint; run it again with the same settings to continue.
#   bash scripts/gpu_pretrain.sh OUTDIR        # then, here: see docs/training.md "On a GPU"
# A further cosine cycle from a stage output (docs/training.md, "Continued on an H100"):
#   INIT=runs/cont/video_mr_cont.pt STEPS=22000 LR=1e-4 SEED=2 bash scripts/gpu_pretrain.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUTDIR=${1:?usage: gpu_pretrain.sh OUTDIR}
STEPS=${STEPS:-12000}
ACCUMULATE=${ACCUMULATE:-4}
WORKERS=${WORKERS:-14}
INIT=${INIT:-runs/video.pt}
LR=${LR:-3e-4}
SEED=${SEED:-0}
export PYTHONPATH=$PWD/InterSliceSR${PYTHONPATH:+:$PYTHONPATH}
$PY -m intersr train mr --data train-data --init "$INIT" --device cuda --steps "$STEPS" \
    --lr "$LR" --seed "$SEED" --accumulate "$ACCUMULATE" --workers "$WORKERS" --threads 2 --resume \
    --checkpoint "$OUTDIR/video_mr_gpu.ckpt" --output "$OUTDIR/video_mr_gpu.pt" --progress none
