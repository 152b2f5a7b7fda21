"""Does self-supervised adaptation help? The same bench case run several ways, gain over B-spline.

Variants (combine with '+'):
  pre        the shipped network, no adaptation (profile still estimated)
  auto       default adaptation to the estimated profile(s) (`--profile auto`)
  true       adaptation to the TRUE profile of the case (an oracle: what a perfect estimate buys)
  best       adapt to the best estimated profile only (not every plausible one)
  lrX        adaptation learning rate X (default 2e-4)
  stepsN     adaptation steps (default 350, the bench's)

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/adaptation_check.py \\
        brain_flair_stroke_8bit.nii.gz box_x4,sinc_x4 pre,auto,true

Each run is the bench's own `run_case` (same scoring, B-spline in the same run), seed 0.
Prints one JSON line per (case, variant). Development aid for issue 11 (docs/benchmarks.md):
tune on volumes seen in pre-training, confirm on held-out ones.
"""
from __future__ import annotations

import json
import sys

import SimpleITK as sitk

from intersr import adapt, bench, pipeline, torch_run


def parse(variant: str) -> dict:
    spec = {"lr": 2e-4, "steps": bench.BENCH_ADAPT_STEPS, "best": False, "pre": False,
            "true": False}
    for part in variant.split("+"):
        if part.startswith("lr"):
            spec["lr"] = float(part[2:])
        elif part.startswith("steps"):
            spec["steps"] = int(part[5:])
        elif part in ("best", "pre", "true"):
            spec[part] = True
        elif part != "auto":
            raise SystemExit(f"unknown variant part {part!r}")
    return spec


def main() -> None:
    volume_name, cases, variants = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
    data = sys.argv[4] if len(sys.argv) > 4 else "../shared/data/mr"
    reference, _ = bench.crop_to_anatomy(sitk.ReadImage(f"{data}/{volume_name}"),
                                         bench.BENCH_CROP)
    choose, make_config = pipeline.choose_profiles, torch_run.adapt_config
    for case in [c for c in bench.CASES if c.name in cases]:
        voxel = bench.prepared_reference(reference, case).GetSpacing()[case.axis]
        for variant in variants:
            spec = parse(variant)

            def chosen(*args, _best=spec["best"], **kwargs):
                profiles, how = choose(*args, **kwargs)
                return (profiles[:1] if _best else profiles), how

            pipeline.choose_profiles = chosen
            torch_run.adapt_config = lambda o, d, _lr=spec["lr"]: adapt.AdaptConfig(
                **{**make_config(o, d).__dict__, "lr": _lr})
            forced = ({"profile": case.shape, "thickness": case.fwhm * voxel}
                      if spec["true"] else {})
            try:
                rows = bench.run_case(reference, case, 0 if spec["pre"] else spec["steps"],
                                      (0,), "auto", (), None, **forced)
            finally:
                pipeline.choose_profiles, torch_run.adapt_config = choose, make_config
            ours, bspline = rows["intersr"]["psnr_fg"], rows["bspline"]["psnr_fg"]
            print(json.dumps({"volume": volume_name.split(".")[0], "case": case.name,
                              "split": bench._split(volume_name.split(".")[0]),
                              "variant": variant, "psnr_fg": round(ours, 2),
                              "bspline": round(bspline, 2), "gain": round(ours - bspline, 2),
                              "adapt_steps": rows["intersr"]["seeds"][0]["adapt_steps"],
                              "profile": rows["intersr"]["profile"]["provenance"],
                              "seconds": round(rows["intersr"]["seconds"])}), flush=True)


if __name__ == "__main__":
    main()
