#!/usr/bin/env bash
# The measurements made on the lent GPU machine (NVIDIA H200, 16 CPU cores, python3 with torch
# 2.11 and no SimpleITK), 2026-11-22. Here, first:
#   mkdir -p .whl bench-out/heldout bench-out/timing-data
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .whl SimpleITK==2.5.3
#   cp ../shared/data/mr/{brain_t2w_arc_m2208,brain_t1gd_skullstripped_mrgd,brain_t1_stroke_8bit,brain_t2_stroke,brain_flair_stroke_8bit}.nii.gz bench-out/heldout/
#   cp ../shared/data/mr/brain_t1_seg3d.nii.gz bench-out/timing-data/
# then there, carrying .whl, bench-out/heldout (or bench-out/timing-data) and MODELS (a folder
# with weights.json; the shipped one when left out), with OUT a folder for the results:
#   bash scripts/device_eval.sh timing OUT [MODELS]   # default `intersr run` 181x215x44 x4 on CUDA
#   bash scripts/device_eval.sh cuda OUT [MODELS]     # 35 held-out cases, adaptation on CUDA
#   bash scripts/device_eval.sh cpu OUT [MODELS]      # the same, adaptation on the CPU, one
#                                                    # thread per case (35 cases on 16 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?timing|cuda|cpu}
OUT=${2:?results folder}
MODELS=${3:-}
[ -d /tmp/site/SimpleITK ] || python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/InterSliceSR PYTHONUNBUFFERED=1
WEIGHTS=()
[ -n "$MODELS" ] && WEIGHTS=(--weights "$MODELS")
CASES="gauss_x4 box_x4 sinc_x4 sinc8_thick20_x4 gap_x4 sinc2_y_x4 knee_x9_to3"
VOLUMES="brain_t2w_arc_m2208 brain_t1gd_skullstripped_mrgd brain_t1_stroke_8bit brain_t2_stroke brain_flair_stroke_8bit"
mkdir -p "$OUT" /tmp/eval
case $MODE in
  timing)
    [ -n "$MODELS" ] && export INTERSR_MODELS_DIR=$PWD/$MODELS
    python3 -m intersr bench bench-out/timing-data --timing --out "$OUT" ;;
  cuda)  # one process per case, all volumes
    export OMP_NUM_THREADS=1
    for c in $CASES; do
      python3 scripts/vae_ablation.py --device cuda --data bench-out/heldout \
          --methods bspline,deconv,pretrained,self-supervised --cases "$c" "${WEIGHTS[@]}" \
          --out "/tmp/eval/$c.json" > "/tmp/eval/$c.log" 2>&1 &
    done
    wait ;;
  cpu)  # one process per (case, volume); the engine uses os.cpu_count() threads, patched to 1
    export OMP_NUM_THREADS=1
    for c in $CASES; do for v in $VOLUMES; do
      python3 -c "import os, sys, runpy; os.cpu_count = lambda: 1; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')" \
          scripts/vae_ablation.py --data bench-out/heldout --methods bspline,deconv,self-supervised \
          --cases "$c" --volumes "$v.nii.gz" "${WEIGHTS[@]}" --out "/tmp/eval/${c}_$v.json" \
          > "/tmp/eval/${c}_$v.log" 2>&1 &
    done; done
    wait ;;
esac
if [ "$MODE" != timing ]; then
  python3 - "$OUT/$MODE.json" "$MODE" <<'PY'
import glob, json, sys
results = []
for name in sorted(glob.glob("/tmp/eval/*.json")):
    results += json.load(open(name))["results"]
json.dump({"steps": 350, "crop": 128, "seed": 0, "device": sys.argv[2] + " on the GPU machine",
           "results": results}, open(sys.argv[1], "w"), indent=1)
print(len(results), "cases ->", sys.argv[1])
PY
fi
