"""The profile estimator's loss over FWHM for each shape, on one bench case: how strongly the
data prefer the estimate over the truth (docs/benchmarks.md, "Slice-profile estimate").

    .venv/bin/python scripts/profile_loss_scan.py brain_t1_seg3d.nii.gz box_x4
"""
from __future__ import annotations

import sys

import numpy as np
import SimpleITK as sitk

from estimator_table import estimator_input  # scripts/ is on the path when run as a script
from intersr import bench, profile


def main() -> None:
    name, case_name = sys.argv[1], sys.argv[2]
    folder = sys.argv[3] if len(sys.argv) > 3 else "../shared/data/mr"
    image, _ = bench.crop_to_anatomy(sitk.ReadImage(f"{folder}/{name}"), bench.BENCH_CROP)
    case = next(c for c in bench.CASES if c.name == case_name)
    array, spacing, _ = estimator_input(image, case)
    print(f"truth: {case.shape}, FWHM / spacing {case.fwhm / case.factor:.2f}")
    for shape in profile.SHAPES:
        cells = []
        for ratio in np.arange(0.4, 1.45, 0.1):
            estimate = profile.estimate_profile(array, spacing, shapes=(shape,),
                                                fwhm_mm=ratio * spacing[0])
            cells.append(f"{ratio:.1f}: {estimate.loss:.4f}")
        print(f"{shape:5s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
