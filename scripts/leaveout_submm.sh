#!/usr/bin/env bash
# A network that has never seen the sub-mm clinical series, so that the bench's sub-mm cases
# (intersr.bench.cases.SUBMM_CASES) can be scored on volumes held out from pre-training: the
# shipped weights were trained on their in-plane axes (model card). Stage 2 only (MR, no video
# stage: the model card's "MR only" variant), on the training split minus SUBMM_VOLUMES, on
# the CPU; weights (with weights.json and sha256) in runs/leaveout_models. Resumable: re-run.
#   bash scripts/leaveout_submm.sh        # about 25 minutes on 2 quiet cores (5000 steps)
# then, e.g.:
#   .venv/bin/python scripts/vae_ablation.py --weights runs/leaveout_models \
#       --methods bspline,deconv,pretrained,self-supervised,oracle \
#       --cases submm_box_5mm,submm_sinc_5mm --out docs/results/submm_leaveout.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MR=$(cd "${MR:-../shared/data/mr}" && pwd)
STEPS=${STEPS:-5000}
EXCLUDE=$(PYTHONPATH=InterSliceSR $PY -c \
  "from intersr.bench.cases import SUBMM_VOLUMES; print(' '.join(SUBMM_VOLUMES))")
if [ ! -d train-data-leaveout/mr ]; then
  mkdir -p runs/leaveout_source
  for f in "$MR"/*.nii.gz; do
    case " $EXCLUDE " in *" $(basename "$f") "*) ;; *) ln -sf "$f" runs/leaveout_source/ ;; esac
  done
  $PY -m intersr train fetch-data --data train-data-leaveout --mr runs/leaveout_source
fi
[ -f runs/leaveout.pt ] || INTERSR_MODELS_DIR=runs/leaveout_models $PY -m intersr train mr \
    --data train-data-leaveout --steps "$STEPS" --resume --checkpoint checkpoints/leaveout.ckpt \
    --output runs/leaveout.pt --ship "mr only, sub-mm series left out" --progress none
echo "leave-out weights: runs/leaveout_models"
