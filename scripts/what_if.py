"""What-if experiments on the bench's simulated cases (docs/benchmarks.md, "Levers tried"):
the product as it is against one change, gain over B-spline per case, same run, seed 0.

    # the network alone (no fine-tuning) or adapted (--steps 350): pick an experiment
    .venv/bin/python scripts/what_if.py oracle --steps 0 --cases box_x4,sinc_x4 --volumes A,B
    .venv/bin/python scripts/what_if.py header --steps 0 ...   # FWHM: geometric mean with the header
    .venv/bin/python scripts/what_if.py views --steps 0 ...    # average over flipped copies
    .venv/bin/python scripts/what_if.py steps --steps 350 --more 900 ...

oracle: the true profile forced (--profile/--thickness), an upper bound for the estimator.
header: the estimated FWHM replaced by its geometric mean with the header's nominal thickness.
views:  the volume also run reversed along the slice axis and mirrored in-plane, averaged.
steps:  a larger adaptation step budget (--more).
best:   adapt to the best estimate only, not to every profile the estimate could not rule out.
average: adaptation checks and keeps a moving average of the weights with decay --decay
        (0: the raw weights, as before 2026-11-22's fifth session; the product now uses 0.99):
        `what_if.py average --steps 350 --decay 0.99 --as-is docs/family_adapted_seen_v3.json`
        measured the change against the stored raw-weight results.
both-axes: the adaptation before this stop's change for a coarser requested spacing (both
        in-plane axes brought to it, not only the axis the pairs run along).
Default volumes: those seen in pre-training (choose levers there, check on held-out ones).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from intersr import adapt, bench, infer, pipeline, torch_run
from intersr.degrade import SliceProfile
from intersr.resources import HELD_OUT

from compare_weights import load  # scripts/ is on the path when run as a script


def flipped_views(model, volume, positions, factor, blur, **kwargs):
    """super_resolve averaged over four views: as is, slices reversed, mirrored, both."""
    n = volume.shape[0]
    mirrored = (n - 1) - np.asarray(positions, np.float32)
    total = np.zeros((len(positions), *volume.shape[1:]), np.float32)
    for reverse in (False, True):
        for mirror in (False, True):
            view = volume[::-1] if reverse else volume
            view = np.ascontiguousarray(view[:, ::-1, ::-1] if mirror else view)
            out = infer.super_resolve(model, view, mirrored if reverse else positions, factor,
                                      blur, **kwargs)
            total += out[:, ::-1, ::-1] if mirror else out
    return total / 4


def header_prior(choose):
    def combined(normalised, spacing3, header, shape, thickness, progress):
        profiles, how = choose(normalised, spacing3, header, shape, thickness, progress)
        if how == "estimated" and header:
            profiles = [SliceProfile(p.shape, float(np.sqrt(p.fwhm * header)), p.tbw)
                        for p in profiles]
        return profiles, how
    return combined


def best_only(choose):
    def first(normalised, spacing3, header, shape, thickness, progress):
        profiles, how = choose(normalised, spacing3, header, shape, thickness, progress)
        return profiles[:1], how
    return first


def both_axes(adapt_function):
    def old_way(model, volume, spacing, profiles, config, device, progress=None,
                target_spacing=None):
        first = adapt.as_profiles(profiles)[0]
        volume, spacing = adapt.at_target_resolution(volume, spacing, target_spacing, first)
        return adapt_function(model, volume, spacing, profiles, config, device, progress)
    return old_way


def averaged_weights(adapt_config, decay: float):
    def config(options, device):
        return dataclasses.replace(adapt_config(options, device), average=decay)
    return config


def stored_gains(path: str) -> dict[tuple[str, str], float]:
    """Gain over B-spline per (volume, case) of the self-supervised method in a
    scripts/vae_ablation.py results file (same seed, steps and crop as this run)."""
    return {key: row["value"] - row["bspline"]
            for key, row in load(f"{path}:self-supervised").items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=("oracle", "header", "views", "steps", "best", "both-axes",
                                               "average"))
    parser.add_argument("--steps", type=int, default=0, help="adaptation steps (0: none)")
    parser.add_argument("--more", type=int, default=900, help="the 'steps' experiment's budget")
    parser.add_argument("--cases", default="box_x4,sinc_x4,sinc8_thick20_x4,gauss_x4,"
                                           "sinc2_y_x4,knee_x9_to3")
    parser.add_argument("--volumes", default=None, help="file names (default: the seen ones)")
    parser.add_argument("--decay", type=float, default=0.99, help="the 'average' experiment's")
    parser.add_argument("--as-is", dest="as_is", default=None, metavar="RESULTS.json",
                        help="take 'as is' from this vae_ablation.py results file (same seed, "
                             "steps and crop) instead of running it again")
    parser.add_argument("--data", default="../shared/data/mr")
    args = parser.parse_args()
    stored = stored_gains(args.as_is) if args.as_is else {}
    folder = Path(args.data)
    names = (args.volumes.split(",") if args.volumes else
             sorted(p.name for p in bench.find_volumes(folder, None) if p.name not in HELD_OUT))
    choose, resolve, adapt_function, configure = (pipeline.choose_profiles,
                                                  pipeline.super_resolve, torch_run.adapt,
                                                  torch_run.adapt_config)
    gains: dict[str, list[float]] = {"as is": [], args.experiment: []}
    print(f"| volume | case | as is | {args.experiment} | difference |\n|---|---|---|---|---|")
    for name in names:
        image, _ = bench.crop_to_anatomy(sitk.ReadImage(str(folder / name)), bench.BENCH_CROP)
        for case in [c for c in bench.CASES if c.name in args.cases.split(",")]:
            row = []
            for variant in ("as is", args.experiment):
                if variant == "as is" and (name.split(".")[0], case.name) in stored:
                    gain = stored[name.split(".")[0], case.name]
                    gains[variant].append(gain)
                    row.append(gain)
                    continue
                pipeline.choose_profiles, pipeline.super_resolve = choose, resolve
                torch_run.adapt, torch_run.adapt_config = adapt_function, configure
                steps, extra = args.steps, {}
                if variant == "header":
                    pipeline.choose_profiles = header_prior(choose)
                elif variant == "both-axes":
                    torch_run.adapt = both_axes(adapt_function)
                elif variant == "best":
                    pipeline.choose_profiles = best_only(choose)
                elif variant == "views":
                    pipeline.super_resolve = flipped_views
                elif variant == "average":
                    torch_run.adapt_config = averaged_weights(configure, args.decay)
                elif variant == "steps":
                    steps = args.more
                elif variant == "oracle":
                    voxel = bench.prepared_reference(image, case).GetSpacing()[case.axis]
                    extra = {"profile": case.shape, "thickness": case.fwhm * voxel}
                r = bench.run_case(image, case, steps, (0,), "cpu", (), None, **extra)
                gain = r["intersr"]["psnr_fg"] - r["bspline"]["psnr_fg"]
                gains[variant].append(gain)
                row.append(gain)
            print(f"| {name.split('.')[0]} | {case.name} | {row[0]:+.2f} | {row[1]:+.2f} | "
                  f"{row[1] - row[0]:+.2f} |", flush=True)
    diff = np.subtract(gains[args.experiment], gains["as is"])
    print(f"\nmedian gain over B-spline: as is {np.median(gains['as is']):+.3f}, "
          f"{args.experiment} {np.median(gains[args.experiment]):+.3f}; difference per case "
          f"median {np.median(diff):+.3f} [{diff.min():+.3f}, {diff.max():+.3f}], "
          f"n = {len(diff)}")


if __name__ == "__main__":
    main()
