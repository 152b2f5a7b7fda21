#!/usr/bin/env bash
# Re-create the shipped weights from scratch (stage 1 video, stage 2 MR) and the ablation's
# MR-only variant. Safe to re-run after an interruption: every stage resumes from its
# checkpoint (checkpoints/*.ckpt) and skips when its output already exists.
#   bash scripts/pretrain.sh            # CPU: about 70 minutes on 2 cores (see the model card)
# Stage 2 on a GPU instead (how the shipped weights were made): scripts/gpu_pretrain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MR=${MR:-../shared/data/mr}
VIDEO_STEPS=${VIDEO_STEPS:-3000}
MR_STEPS=${MR_STEPS:-8000}
[ -d train-data/mr ] || $PY -m intersr train fetch-data --mr "$MR"
[ -f runs/video.pt ] || $PY -m intersr train video --steps "$VIDEO_STEPS" --resume \
    --checkpoint checkpoints/video.ckpt --output runs/video.pt --progress none
[ -f runs/video_mr.pt ] || $PY -m intersr train mr --steps "$MR_STEPS" --resume \
    --init runs/video.pt --checkpoint checkpoints/video_mr.ckpt --output runs/video_mr.pt \
    --ship video+mr --progress none
# ablation variant (b): MR fine-tuning without video pre-training
[ -f runs/mr_only.pt ] || $PY -m intersr train mr --steps "$MR_STEPS" --resume \
    --checkpoint checkpoints/mr_only.ckpt --output runs/mr_only.pt --progress none
# ablation (not shipped, docs/benchmarks.md "Levers tried"): stage 2 telling the network a
# log-normally jittered thickness; JITTER=1 bash scripts/pretrain.sh, weights in runs/jitter_models
if [ "${JITTER:-0}" = 1 ] && [ ! -f runs/jitter_models/weights.json ]; then
  INTERSR_MODELS_DIR=runs/jitter_models $PY -m intersr train mr --steps "$MR_STEPS" --resume \
      --init runs/video.pt --checkpoint checkpoints/video_mr_jitter.ckpt \
      --output runs/video_mr_jitter.pt --blur-jitter 0.2 --ship "video+mr (blur jitter 0.2)" \
      --progress none
fi
echo "pretraining done: runs/*.pt, shipped weights in InterSliceSR/intersr/data/models/"
