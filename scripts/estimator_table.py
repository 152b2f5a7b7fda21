"""Slice-profile estimator accuracy on simulated thick slices of real near-isotropic volumes.

For each volume (cropped like the bench) and each profile case of the bench (the bench's
own Case list, so the table and the bench agree), make thick slices with the true profile,
estimate the profile with `--profile auto` and report shape and FWHM error. Held-out and seen
volumes are listed separately. Writes JSON (and prints a Markdown table).

    .venv/bin/python scripts/estimator_table.py --out docs/estimator.json

--variant no-offset-all-axes re-runs it with a comparison that was tried and rejected (the
log spectra compared without a free offset, every in-plane axis used as a source).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from intersr.bench import CASES, BENCH_CROP, crop_to_anatomy, find_volumes, prepared_reference, \
    thick_case, _split
from intersr.metrics import normaliser
from intersr import profile
from intersr.profile import estimate_profile
from intersr.volume import to_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/mr")
    parser.add_argument("--crop", type=int, default=BENCH_CROP)
    parser.add_argument("--cases", default="")
    parser.add_argument("--volumes", default="")
    parser.add_argument("--out", default="bench-out/estimator.json")
    parser.add_argument("--variant", choices=("shipped", "no-offset-all-axes"), default="shipped")
    args = parser.parse_args()
    if args.variant == "no-offset-all-axes":
        profile._mismatch = lambda target, candidate: float(np.mean((candidate - target) ** 2))
        profile.SHARP_MARGIN = float("inf")
    wanted = set(filter(None, args.cases.split(",")))
    cases = [c for c in CASES if not wanted or c.name in wanted]
    rows = []
    for path in find_volumes(Path(args.data), [v for v in args.volumes.split(",") if v] or None):
        reference, _ = crop_to_anatomy(sitk.ReadImage(str(path), sitk.sitkFloat32), args.crop)
        name = path.name.split(".")[0]
        for case in cases:
            ref = prepared_reference(reference, case)
            thick = thick_case(ref, case)
            volume = to_volume(thick, force=True, source=case.name)
            array = normaliser(volume.array).apply(volume.array)
            spacing3 = (volume.geometry.slice_spacing, *volume.geometry.inplane_spacings)
            voxel = ref.GetSpacing()[case.axis]
            t0 = time.monotonic()
            est = estimate_profile(array, spacing3)
            seconds = time.monotonic() - t0
            fwhm = est.profile.fwhm / voxel
            forced = estimate_profile(array, spacing3, shapes=(case.shape,))
            row = {"volume": name, "split": _split(name), "case": case.name,
                   "truth": f"{case.shape}{' TBW %g' % case.tbw if case.shape == 'sinc' else ''}"
                            f" {case.fwhm:g}",
                   "shape": est.profile.shape, "tbw": est.profile.tbw, "fwhm": round(fwhm, 3),
                   "fwhm_error": round(fwhm / case.fwhm - 1, 3),
                   "shape_right": est.profile.shape == case.shape,
                   "fwhm_true_shape": round(forced.profile.fwhm / voxel, 3),
                   "fwhm_error_true_shape": round(forced.profile.fwhm / voxel / case.fwhm - 1, 3),
                   "plausible": [p.describe() for p in est.plausible], "seconds": round(seconds, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    errors = np.abs([r["fwhm_error"] for r in rows])
    print(f"\n{len(rows)} cases: |FWHM error| median {np.median(errors):.1%}, max {errors.max():.1%}, "
          f"within 15 %: {(errors <= 0.15).sum()}/{len(rows)}; shape right "
          f"{sum(r['shape_right'] for r in rows)}/{len(rows)}")
    print("\n| split | volume | case (truth) | estimate | FWHM error | shape right | "
          "FWHM error, shape given |\n|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["split"], r["volume"], r["case"])):
        print(f"| {r['split']} | {r['volume']} | {r['case']} ({r['truth']}) | {r['shape']} "
              f"{r['fwhm']:.2f} | {r['fwhm_error']:+.0%} | {'yes' if r['shape_right'] else 'no'} "
              f"| {r['fwhm_error_true_shape']:+.0%} |")


if __name__ == "__main__":
    main()
