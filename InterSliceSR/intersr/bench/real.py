"""`intersr bench --real`: real thick-slice scans (no reference): grid, data consistency, time."""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..acquisition.metrics import data_consistency_db
from ..volumes.grid import is_isotropic
from ..volumes.read import to_volume
from .cases import DEFAULT_DATA, expected_grid
from .timing import run_engine


def real_scans(args) -> int:
    """`intersr run` on every thick-slice volume of DIR: contract geometry and data consistency.

    Real scans have no reference; data consistency (the output degraded again onto the input's
    slabs, compared with the input) is measured for InterSliceSR and B-spline alike.
    """
    data = Path(args.data) if args.data else DEFAULT_DATA
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [p for p in sorted(data.iterdir()) if p.name.endswith((".nii.gz", ".nii", ".nrrd"))]
    rows = []
    for path in paths:
        thick = sitk.ReadImage(str(path))
        if is_isotropic(thick.GetSpacing()):
            continue
        h = min(sp for i, sp in enumerate(thick.GetSpacing()) if i != int(np.argmax(thick.GetSpacing())))
        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / "iso.nrrd"
            code, seconds, peak = run_engine(
                [str(path), str(dst), "--progress", "none", "--device", args.device,
                 "--adapt-seconds", str(args.adapt_seconds if args.adapt_seconds is not None else 60)])
            if code != 0:
                print(f"intersr bench: {path.name}: intersr run failed with exit code {code}",
                      file=sys.stderr)
                return 1
            result = sitk.ReadImage(str(dst))
            grid = expected_grid(thick, h)
            geometry_error = max(
                float(np.abs(np.subtract(result.GetOrigin(), grid.GetOrigin())).max()),
                float(np.abs(np.subtract(result.GetSpacing(), grid.GetSpacing())).max()),
                float(np.abs(np.subtract(result.GetDirection(), grid.GetDirection())).max()))
            ours = to_volume(sitk.Cast(result, sitk.sitkFloat32), force=True)
            bsp = sitk.Resample(sitk.Cast(thick, sitk.sitkFloat32), result, sitk.Transform(),
                                sitk.sitkBSpline, 0.0, sitk.sitkFloat32)
            theirs = to_volume(bsp, force=True, slice_axis=ours.geometry.slice_axis)
            source = to_volume(thick, force=True)
            factor = source.geometry.slice_spacing / h
            row = {"volume": path.name.split(".")[0], "size": list(thick.GetSize()),
                   "spacing": [round(v, 4) for v in thick.GetSpacing()],
                   "output_size": list(result.GetSize()), "factor": round(factor, 3),
                   "same_size": list(result.GetSize()) == list(grid.GetSize()),
                   "geometry_error_mm": geometry_error, "seconds": round(seconds, 1),
                   "peak_rss_gb": round(peak / 2**30, 2),
                   "dc_intersr_db": data_consistency_db(source.array, ours.array, factor, factor),
                   "dc_bspline_db": data_consistency_db(source.array, theirs.array, factor, factor),
                   "adapt_steps": result.GetMetaData("intersr_adapt_steps")}
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "real.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| volume | size | spacing mm | factor | output size | grid error mm | "
             "DC B-spline dB | DC intersr dB | intersr s | peak RSS GB |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['volume']} | {'x'.join(map(str, r['size']))} | "
                     f"{'x'.join(map(str, r['spacing']))} | {r['factor']:g} | "
                     f"{'x'.join(map(str, r['output_size']))} | {r['geometry_error_mm']:.1e} | "
                     f"{r['dc_bspline_db']:.2f} | {r['dc_intersr_db']:.2f} | {r['seconds']:.0f} | "
                     f"{r['peak_rss_gb']:.2f} |")
    (out / "real.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    ok = all(r["same_size"] and r["geometry_error_mm"] < 1e-4 for r in rows)
    return 0 if ok and rows else 1
