#!/usr/bin/env bash
# The package on its own, in fresh virtual environments (no editable install, no repository):
#  1. build the wheel with the setuptools pyproject.toml declares (pip's build isolation);
#  2. venv A: the wheel + torch (non-editable) -> `intersr demo`; the output's provenance must
#     carry the shipped weights' sha256 (read from the installed package's own manifest);
#  3. venv B: the wheel + onnxruntime, NO torch -> `intersr run --no-adapt` on the sample, then
#     (BENCH=1) `intersr bench` with no adaptation on the held-out x4 cases vs B-spline.
# Usage: bash scripts/check_fresh_venvs.sh [WORKDIR]     (BENCH=1 also runs the held-out bench)
# Prints one "ok: ..." line per check and exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
WORK=${1:-$(mktemp -d /tmp/intersr-venvs.XXXXXX)}
mkdir -p "$WORK"
echo "work folder: $WORK"

# 1. the wheel
rm -rf "$WORK/dist"
"$PY" -m pip wheel -q --no-deps --disable-pip-version-check -w "$WORK/dist" "$REPO"
WHEEL=$(ls "$WORK"/dist/intersr-*.whl)
"$PY" -m zipfile -l "$WHEEL" | grep -q "intersr/data/models/intersr_sliceinr.onnx"
"$PY" -m zipfile -l "$WHEEL" | grep -q "intersr/data/sample/KmeansTest_T1UCharRaw.nii.gz"
echo "ok: built $(basename "$WHEEL") with weights, ONNX export and sample inside"

# 2. venv A: wheel + torch, `intersr demo`
rm -rf "$WORK/venv-torch"
"$PY" -m venv "$WORK/venv-torch"
A="$WORK/venv-torch/bin"
"$A/python" -m pip install -q --disable-pip-version-check "torch==2.13.0" "$WHEEL"
(cd "$WORK" && "$A/python" - <<'EOF'
import intersr, pathlib
assert "site-packages" in intersr.__file__, intersr.__file__  # installed, not the repository
EOF
)
(cd "$WORK" && "$A/intersr" demo --output demo/sample_isotropic.nrrd --budget fast --progress none)
(cd "$WORK" && "$A/python" - <<'EOF'
import json, SimpleITK as sitk
from intersr.resources import models_dir
shipped = json.loads((models_dir() / "weights.json").read_text())["weights"][0]["sha256"]
image = sitk.ReadImage("demo/sample_isotropic.nrrd")
got = image.GetMetaData("intersr_weights_sha256")
assert got == shipped, (got, shipped)
print(f"ok: demo in a fresh venv (torch backend): provenance sha256 {got[:16]}... = shipped; "
      f"size {image.GetSize()}, backend {image.GetMetaData('intersr_backend')}")
EOF
)

# 3. venv B: wheel + onnxruntime, no torch
rm -rf "$WORK/venv-ort"
"$PY" -m venv "$WORK/venv-ort"
B="$WORK/venv-ort/bin"
"$B/python" -m pip install -q --disable-pip-version-check "$WHEEL[onnx]"
if "$B/python" -c "import torch" 2>/dev/null; then echo "torch is installed in venv B"; exit 1; fi
"$B/python" -c "import numpy, SimpleITK, onnxruntime; print('venv B: numpy', numpy.__version__, 'SimpleITK', SimpleITK.Version_VersionString(), 'onnxruntime', onnxruntime.__version__, '(no torch)')"
SAMPLE=$("$B/python" -c "from intersr.resources import SAMPLE; print(SAMPLE)")
(cd "$WORK" && "$B/intersr" run "$SAMPLE" ort_isotropic.nrrd --no-adapt --progress none)
(cd "$WORK" && "$B/python" - <<'EOF'
import SimpleITK as sitk
image = sitk.ReadImage("ort_isotropic.nrrd")
backend = image.GetMetaData("intersr_backend")
assert backend.startswith("onnxruntime") and "no fine-tuning" in backend, backend
print(f"ok: `intersr run --no-adapt` without torch: size {image.GetSize()}, spacing "
      f"{image.GetSpacing()}, backend '{backend}'")
EOF
)
"$B/intersr" info

if [ "${BENCH:-0}" = 1 ]; then
  # The held-out volumes of every training stage (intersr.resources.HELD_OUT), every x4 case
  # of the bench (matched and mismatched profiles), no adaptation (--adapt-steps 0), one seed.
  HELD_OUT=$("$B/python" -c "from intersr.resources import HELD_OUT; print(','.join(HELD_OUT))")
  CASES=$("$B/python" -c "from intersr.bench import CASES; print(','.join(c.name for c in CASES if c.factor == 4))")
  DATA=${DATA:-$REPO/../shared/data/mr}
  (cd "$WORK" && "$B/intersr" bench "$DATA" --out bench-ort --adapt-steps 0 --seeds 1 \
     --device cpu --cases "$CASES" --volumes "$HELD_OUT")
  "$B/python" - "$WORK/bench-ort/bench.json" <<'EOF'
import json, statistics, sys
rows = json.load(open(sys.argv[1]))["results"]
gains = [r["methods"]["intersr"]["psnr_fg"] - r["methods"]["bspline"]["psnr_fg"] for r in rows]
wins = sum(g > 0 for g in gains)
for r, g in zip(rows, gains):
    print(f"  {r['volume']:32s} {r['case']:17s} B-spline {r['methods']['bspline']['psnr_fg']:6.2f} "
          f"intersr {r['methods']['intersr']['psnr_fg']:6.2f} ({g:+.2f} dB)")
print(f"no torch, no adaptation, held-out x4: intersr - B-spline foreground PSNR median "
      f"{statistics.median(gains):+.2f} dB, min {min(gains):+.2f}, over {len(gains)} cases, "
      f"better in {wins}")
sys.exit(0 if wins == len(gains) else 1)
EOF
fi
echo "all checks passed ($WORK)"
