"""How unequally sharp are the bench's reference volumes along their three axes?

For each near-isotropic volume (cropped like the bench) and each ordered pair of axes (i, j):
the Gaussian FWHM (voxels, 0-3 in steps of 0.25) that, applied along axis i, makes the log
power spectrum along i match the one along j (free offset, as the profile estimator compares).
0 means axis i is not sharper than j. The profile estimator can only compare the slice axis
with the in-plane axes, so a reference whose slice axis is sharper than its in-plane axes reads
as a thinner profile than the one the bench applied (docs/benchmarks.md).

    .venv/bin/python scripts/reference_sharpness.py [DATA]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from intersr.bench import BENCH_CROP, crop_to_anatomy, find_volumes, _split
from intersr.degrade import degrade
from intersr.metrics import normaliser
from intersr.profile import _mismatch, _segments, log_spectrum

BLURS = np.arange(0.0, 3.01, 0.25)
NAMES = "zyx"  # numpy axis order


def blur_to_match(array: np.ndarray, i: int, j: int, spectra: dict) -> float:
    def loss(g: float) -> float:
        blurred = degrade(array, i, 1.0, g) if g > 0 else array
        return _mismatch(spectra[j], log_spectrum(_segments(blurred, i, 16)))
    return float(min(BLURS, key=loss))


def main() -> None:
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mr")
    print("| volume | split | " + " | ".join(f"{NAMES[i]} -> {NAMES[j]}" for i in range(3)
                                          for j in range(3) if i != j) + " |")
    print("|---|---|" + "---|" * 6)
    for path in find_volumes(data, None):
        image, _ = crop_to_anatomy(sitk.ReadImage(str(path), sitk.sitkFloat32), BENCH_CROP)
        array = sitk.GetArrayFromImage(image)
        array = normaliser(array).apply(array)
        spectra = {a: log_spectrum(_segments(array, a, 16)) for a in range(3)}
        cells = [f"{blur_to_match(array, i, j, spectra):.2f}" for i in range(3) for j in range(3)
                 if i != j]
        name = path.name.split(".")[0]
        print(f"| {name} | {_split(name)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
