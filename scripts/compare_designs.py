"""Compare the two network designs (docs/design.md) at equal adaptation time, from scratch.

    .venv/bin/python scripts/compare_designs.py --out docs/designs.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import SimpleITK as sitk
import torch

from intersr.adapt import AdaptConfig, adapt
from intersr.bench import Case, crop_to_anatomy, thick_case
from intersr.infer import super_resolve
from intersr.metrics import normaliser, quality
from intersr.network import NetConfig, build_network
from intersr.volume import output_geometry, output_positions, to_image, to_volume


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/mr")
    parser.add_argument("--volumes", default="brain_t2w_arc_m2208.nii.gz,"
                        "brain_t1gd_skullstripped_mrgd.nii.gz")
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--factors", default="4")
    parser.add_argument("--out", default="docs/designs.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name in args.volumes.split(","):
        reference, _ = crop_to_anatomy(sitk.ReadImage(str(Path(args.data) / name)), args.crop)
        ref = sitk.GetArrayFromImage(reference)
        for factor in [float(f) for f in args.factors.split(",")]:
            thick = thick_case(reference, Case("z", 2, factor, factor))
            volume = to_volume(thick, force=True)
            geometry = output_geometry(volume.geometry, reference.GetSpacing()[2])
            intensity = normaliser(volume.array)
            row = {"volume": name.split(".")[0], "factor": factor}
            for design in ("inr", "cnn"):
                torch.manual_seed(0)
                model = build_network(NetConfig(design=design))
                result = adapt(model, intensity.apply(volume.array), (factor, 1.0, 1.0), factor,
                               AdaptConfig(seconds=args.seconds, steps=10**6, patience=10**6,
                                           seed=0), torch.device("cpu"))
                t0 = time.monotonic()
                out = super_resolve(model, intensity.apply(volume.array),
                                    output_positions(volume.array.shape[0], factor), factor,
                                    1.0, torch.device("cpu"))
                infer_s = time.monotonic() - t0
                est = sitk.GetArrayFromImage(to_image(intensity.invert(out).astype("float32"), geometry))
                row[design] = {**quality(ref[:est.shape[0]], est), "steps": result.steps,
                               "infer_seconds": round(infer_s, 2),
                               "params": sum(p.numel() for p in model.parameters())}
                print(name, factor, design, row[design], flush=True)
            bsp = sitk.Resample(thick, to_image(out, geometry), sitk.Transform(), sitk.sitkBSpline,
                                0.0, sitk.sitkFloat32)
            row["bspline"] = quality(ref[:est.shape[0]], sitk.GetArrayFromImage(bsp))
            rows.append(row)
            Path(args.out).write_text(json.dumps({"seconds": args.seconds, "rows": rows},
                                                 indent=2) + "\n")
    for r in rows:
        print(f"| {r['volume']} | x{r['factor']:g} | {r['bspline']['psnr_fg']:.2f} | "
              f"{r['inr']['psnr_fg']:.2f} ({r['inr']['steps']} steps, {r['inr']['infer_seconds']} s) | "
              f"{r['cnn']['psnr_fg']:.2f} ({r['cnn']['steps']} steps, {r['cnn']['infer_seconds']} s) |")


if __name__ == "__main__":
    main()
