"""Ablation of the pre-training stages on held-out volumes (model card table).

Variants, each scored against the reference with B-spline in the same run:
  (a) no pre-training + adaptation      (b) MR fine-tuning only + adaptation
  (c) video + MR + adaptation (shipped) (d) video + MR without adaptation
All adapted variants get the same step budget (150 steps); adaptation speed is the first
evaluation (every 10 steps) at which the held-out loss reaches the loss (b) ends with.

    .venv/bin/python scripts/ablation.py --data ../shared/data/mr --out docs/ablation.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from intersr.adapt import AdaptConfig, adapt
from intersr.bench import Case, crop_to_anatomy, thick_case
from intersr.infer import super_resolve
from intersr.metrics import normaliser, quality
from intersr.network import NetConfig, build_network
from intersr.resources import HELD_OUT
from intersr.volume import output_positions, to_image, to_volume
from intersr.weights import load_pretrained

VARIANTS = {"a": ("none", True), "b": ("runs/mr_only.pt", True),
            "c": ("shipped", True), "d": ("shipped", False)}


def model_for(source: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if source == "shipped":
        return load_pretrained().model
    model = build_network(NetConfig())
    if source != "none":
        model.load_state_dict(torch.load(source, map_location="cpu", weights_only=True)["model"])
    return model


def run_variant(volume, source: str, adapted: bool, steps: int, factor: float, thickness: float):
    model = model_for(source)
    array = volume.array
    intensity = normaliser(array)
    s = volume.geometry.slice_spacing
    history = []
    t0 = time.monotonic()
    if adapted:
        result = adapt(model, intensity.apply(array), (s, *volume.geometry.inplane_spacings), thickness,
                       AdaptConfig(steps=steps, eval_every=10, patience=10**6, seed=0),
                       torch.device("cpu"))
        history = [(0, result.initial_loss)] + [(h[0], h[2]) for h in result.history]
    positions = output_positions(array.shape[0], factor)
    out = super_resolve(model, intensity.apply(array), positions, factor, thickness / s, torch.device("cpu"))
    out = np.clip(intensity.invert(out), array.min(), array.max())
    return out, history, time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/mr")
    parser.add_argument("--volumes", default="brain_t2w_arc_m2208.nii.gz,"
                        "brain_t1gd_skullstripped_mrgd.nii.gz,brain_t2_stroke.nii.gz")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--out", default="docs/ablation.json")
    parser.add_argument("--table", action="store_true", help="only print the table of --out")
    args = parser.parse_args()
    if args.table:
        saved = json.loads(Path(args.out).read_text())
        print(markdown(saved["rows"], saved["steps"]))
        return
    torch.set_num_threads(2)
    rows = []
    for name in args.volumes.split(","):
        assert name in HELD_OUT, f"{name} is not held out from pre-training"
        reference, _ = crop_to_anatomy(sitk.ReadImage(str(Path(args.data) / name)), args.crop)
        for factor in (4.0, 2.5):
            case = Case(f"z_x{factor:g}", 2, factor, factor)
            thick = thick_case(reference, case)
            volume = to_volume(thick, force=True)
            ref = sitk.GetArrayFromImage(reference)
            row = {"volume": name.split(".")[0], "factor": factor, "variants": {}}
            histories = {}
            for key, (source, adapted) in VARIANTS.items():
                out, history, seconds = run_variant(volume, source, adapted, args.steps,
                                                    factor, factor * reference.GetSpacing()[2])
                from intersr.volume import output_geometry
                geometry = output_geometry(volume.geometry, reference.GetSpacing()[2])
                est = sitk.GetArrayFromImage(to_image(out, geometry))
                n = est.shape[0]
                row["variants"][key] = {**quality(ref[:n], est), "seconds": round(seconds, 1)}
                histories[key] = history
                print(name, factor, key, {k: round(v, 4) for k, v in row["variants"][key].items()},
                      flush=True)
            grid = sitk.Image(list(reversed(est.shape)), sitk.sitkFloat32)
            grid.CopyInformation(to_image(out, geometry))
            bsp = sitk.Resample(thick, grid, sitk.Transform(), sitk.sitkBSpline, 0.0, sitk.sitkFloat32)
            row["variants"]["bspline"] = quality(ref[:n], sitk.GetArrayFromImage(bsp))
            row["history"] = histories
            rows.append(row)
            Path(args.out).write_text(json.dumps({"steps": args.steps, "crop": args.crop,
                                                  "rows": rows}, indent=2) + "\n")
    print(markdown(rows, args.steps))


def steps_to(history: list, target: float) -> int | None:
    return next((step for step, loss in history if loss <= target), None)


def markdown(rows: list[dict], steps: int) -> str:
    """The model card table; adaptation speed from the held-out loss histories."""
    keys = ["bspline", "a", "b", "c", "d"]
    lines = ["| volume | factor | " + " | ".join(f"{k} PSNR" for k in keys) + " | "
             + " | ".join(f"{k} SSIM" for k in keys)
             + " | held-out L1 at step 0 a / b / c | steps to (b)'s final loss: b / c |",
             "|" + "---|" * (4 + 2 * len(keys))]
    for r in rows:
        v, h = r["variants"], r["history"]
        target = max(h["b"][-1][1], h["c"][-1][1])
        lines.append(f"| {r['volume']} | x{r['factor']:g} | "
                     + " | ".join(f"{v[k]['psnr_fg']:.2f}" for k in keys) + " | "
                     + " | ".join(f"{v[k]['ssim_fg']:.4f}" for k in keys) + " | "
                     + " / ".join(f"{h[k][0][1]:.4f}" for k in "abc") + " | "
                     + " / ".join(str(steps_to(h[k], target)) for k in "bc") + " |")
    for factor in sorted({r["factor"] for r in rows}, reverse=True):
        sel = [r for r in rows if r["factor"] == factor]
        lines.append(f"| **mean** | x{factor:g} | "
                     + " | ".join(f"{np.mean([r['variants'][k]['psnr_fg'] for r in sel]):.2f}"
                                  for k in keys) + " | "
                     + " | ".join(f"{np.mean([r['variants'][k]['ssim_fg'] for r in sel]):.4f}"
                                  for k in keys) + " | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
