"""`intersr bench --fusion`: simulated multi-stack exams from real near-isotropic MR volumes.

Per case (axial/coronal/sagittal stacks made with the one degradation model, rigid motion up
to 5 deg / 4 mm between them, Gaussian, box and windowed-sinc profiles, noise, mixed in-plane
spacing and field of view): foreground PSNR of the best single-stack B-spline, the average of
the registered B-spline stacks, the classical SRR (same solver and registered transforms, no
network prior), the reference stack's single-stack network, and `intersr fuse`; registration
error (mm, mean over the foreground) and wall times. Seen and held-out volumes apart.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import options as run_options
from ..acquisition.metrics import foreground_mask, normaliser, psnr
from ..methods.fusion import combine as fusion
from ..methods.fusion.forward import Grid
from ..methods.fusion.register import displacement_error
from ..methods.fusion.stacks import corners
from ..runners.fuse import network_prior
from .cases import DEFAULT_DATA
from .fusion_cases import load_truth, random_motion, simulate_stack
from .timing import run_engine

# seen in pre-training vs held out from it (resources.HELD_OUT), as in every bench table
SEEN = ("brain_t1_seg3d", "brain_t1_memprage_fnndsc", "brain_t1_eun_fnndsc_8bit")
HELD_OUT = ("brain_t2w_arc_m2208", "brain_t1gd_skullstripped_mrgd", "brain_t2_stroke")
# name: (orientations, factor, profile, noise, in-plane mm per stack, fov scale per stack)
CASES = {
    "3clean_gauss_x4": (("axial", "coronal", "sagittal"), 4, "gauss", 0.0, (1, 1, 1), (1, 1, 1)),
    "3noisy_sinc_x4": (("axial", "coronal", "sagittal"), 4, "sinc", 0.025, (1, 1, 1), (1, 1, 1)),
    "2clean_box_x5": (("axial", "coronal"), 5, "box", 0.0, (1, 1), (1, 1)),
    "3mixed_gauss_x3": (("axial", "coronal", "sagittal"), 3, "gauss", 0.0, (1.0, 0.9, 1.1),
                        (1.0, 0.85, 1.0)),
}
QUICK_CASES = ("3clean_gauss_x4", "2clean_box_x5")


def make_case(truth: sitk.Image, case: str, seed: int):
    """Stacks, thicknesses, profiles and true transforms (reference = first = no motion)."""
    orients, factor, shape, noise, inplane, fovs = CASES[case]
    rng = np.random.default_rng(seed)
    centre = corners(truth).mean(0)
    images, thick, motions = [], [], []
    for k, o in enumerate(orients):
        motion = sitk.Euler3DTransform() if k == 0 else random_motion(rng, centre)
        im, t = simulate_stack(truth, o, factor, shape=shape, motion=motion, noise=noise,
                               inplane_mm=inplane[k], fov_scale=fovs[k], rng=rng)
        images.append(im)
        thick.append(t)
        motions.append(motion)
    return images, thick, [shape] * len(images), motions


def tile_png(path: str, slices: list[np.ndarray], low: float, high: float) -> None:
    """Same slice of each volume side by side, one window, as an 8-bit PNG (no matplotlib)."""
    tiles = [np.clip((s - low) / (high - low) * 255, 0, 255).astype(np.uint8) for s in slices]
    sitk.WriteImage(sitk.GetImageFromArray(np.hstack(tiles)), path)


def run_case(truth: sitk.Image, case: str, seed: int, out_dir: str, tag: str, adapt: bool,
             prior_kind: str = "spectral", rounds: int = 1) -> dict:
    images, thick, profiles, motions = make_case(truth, case, seed)
    t0 = time.monotonic()
    upsample = network_prior(run_options.make(no_adapt=not adapt, adapt_seconds=30.0 if adapt
                                              else None, device="cpu", seed=seed % 7), {})
    priors = [upsample(im, t, p)[0] for im, t, p in zip(images, thick, profiles)]
    t_net = time.monotonic() - t0
    t0 = time.monotonic()
    fused, report = fusion.fuse(images, thick, profile=profiles, priors=priors,
                                prior=prior_kind, rounds=rounds)
    t_fuse = time.monotonic() - t0
    tfs = fusion.transforms_of(report)
    t0 = time.monotonic()
    classic, _ = fusion.fuse(images, thick, profile=profiles, network=False, transforms=tfs)
    t_classic = time.monotonic() - t0
    grid = Grid.of(fused)
    truth_g = fusion.resample_to(truth, grid, None, sitk.sitkLinear)
    intensity = normaliser(truth_g)
    norm = lambda a: np.clip(intensity.apply(a), 0, 1)  # noqa: E731
    ref = norm(truth_g)
    mask = foreground_mask(ref)
    score = lambda a: float(psnr(ref, norm(a), mask))  # noqa: E731
    bspl = fusion.bspline_baselines(images, tfs, fused)
    covered = [fusion.coverage(im, grid, t)
               for im, t in zip(images, tfs)]
    avg = sum(bspl) / np.maximum(sum(c.astype(np.float32) for c in covered), 1)
    single = [score(b) for b in bspl]
    net_ref = fusion.resample_to(priors[0], grid, None, sitk.sitkLinear)
    arr_f, arr_c = sitk.GetArrayFromImage(fused), sitk.GetArrayFromImage(classic)
    fg = np.argwhere(sitk.GetArrayViewFromImage(truth) > 0.15 * np.percentile(
        sitk.GetArrayViewFromImage(truth), 99.5))[::97]
    pts = np.array([truth.TransformIndexToPhysicalPoint([int(i) for i in p[::-1]]) for p in fg])
    reg_err = [displacement_error(t, m, pts) for t, m in zip(tfs[1:], motions[1:])]
    result = {
        "volume": tag, "case": case, "psnr_bspline_best": max(single),
        "psnr_bspline_each": single, "psnr_bspline_average": score(avg),
        "psnr_classical": score(arr_c), "psnr_network_reference": score(net_ref),
        "psnr_fused": score(arr_f), "prior": prior_kind, "rounds": rounds,
        "registration_error_mm": reg_err,
        "registration_error_mean_mm": float(np.mean(reg_err)),
        "seconds_network_all_stacks": t_net, "seconds_fuse_without_network": t_fuse,
        "seconds_fuse_total": t_fuse + t_net, "seconds_classical": t_classic,
        "timings": report["timings"], "stacks": report["stacks"], "grid": report["grid"]["size"],
    }
    z = grid.shape[0] // 2
    best = int(np.argmax(single))
    tile_png(os.path.join(out_dir, f"{tag}_{case}.png"),
             [truth_g[z], bspl[best][z], arr_c[z], arr_f[z]], intensity.low, intensity.high)
    return result


KEYS = ("psnr_bspline_best", "psnr_bspline_average", "psnr_classical",
        "psnr_network_reference", "psnr_fused", "registration_error_mean_mm",
        "seconds_fuse_total")


def summarise(results: list[dict]) -> str:
    lines = ["volume case | best-bspl avg-bspl classical net-ref fused | reg-mm | fuse-s"]
    for r in results:
        lines.append(f"{r['volume']} {r['case']} | " + " ".join(f"{r[k]:.2f}" for k in KEYS))
    if results:
        lines.append("MEAN | " + " ".join(f"{np.mean([r[k] for r in results]):.2f}"
                                          for k in KEYS))
    return "\n".join(lines)


def targets(part: list[dict]) -> list[str]:
    """Issue 25's done-when checks on one split."""
    gain = lambda r: r["psnr_fused"] - r["psnr_classical"]  # noqa: E731
    clean = [gain(r) for r in part if r["case"].startswith(("3clean", "3mixed"))]
    hard = [gain(r) for r in part if "noisy" in r["case"] or r["case"].startswith("2")]
    lines = []
    if clean:
        lines.append(f"noise-free 3 stacks: fused - classical min {min(clean):+.2f} dB (>= -0.2)")
    if hard:
        lines.append(f"noisy and 2-stack: fused - classical mean {np.mean(hard):+.2f} dB (>= +1.0)")
    lines.append("fused - best single-stack B-spline mean "
                 f"{np.mean([r['psnr_fused'] - r['psnr_bspline_best'] for r in part]):+.2f} dB "
                 "(>= +3.0)")
    lines.append("fused - average of registered B-splines min "
                 f"{min(r['psnr_fused'] - r['psnr_bspline_average'] for r in part):+.2f} dB (>= 0)")
    lines.append("registration error max "
                 f"{max(max(r['registration_error_mm']) for r in part):.3f} mm (<= 0.5)")
    return lines


def fusion_timing(args, runs: int = 3) -> int:
    """`intersr bench --fusion --timing`: `intersr fuse` with default settings on three stacks
    of about 180 x 215 x 45 (1 mm pixels, 4 mm slices, 2 % noise, rigid motion) made from a
    real volume, as a separate process: wall time and peak RSS, median of `runs`."""
    data = Path(args.data or str(DEFAULT_DATA))
    out = Path(args.out) / "fusion_timing"
    out.mkdir(parents=True, exist_ok=True)
    image = sitk.ReadImage(str(data / "brain_t1_eun_fnndsc_8bit.nii.gz"), sitk.sitkFloat32)
    truth = sitk.Resample(image, [180, 215, 180], sitk.Transform(), sitk.sitkLinear,
                          image.TransformContinuousIndexToPhysicalPoint([38, -12, -14]),
                          (1.0, 1.0, 1.0), image.GetDirection(), 0.0, sitk.sitkFloat32)
    rng = np.random.default_rng(5)
    paths = []
    for k, orientation in enumerate(("axial", "coronal", "sagittal")):
        motion = None if k == 0 else random_motion(rng, corners(truth).mean(0))
        stack, _ = simulate_stack(truth, orientation, 4, motion=motion, noise=0.02, rng=rng)
        paths.append(str(out / f"{orientation}.nii.gz"))
        sitk.WriteImage(stack, paths[-1])
    rows = []
    for run in range(runs):
        code, seconds, peak = run_engine([*paths, "--output", str(out / "fused.nrrd"),
                                          "--progress", "none"], command="fuse")
        rows.append({"run": run, "exit_code": code, "wall_s": round(seconds, 1),
                     "peak_rss_gb": round(peak / 2**30, 2),
                     "sizes": [list(sitk.ReadImage(p).GetSize()) for p in paths]})
        print(json.dumps(rows[-1]), flush=True)
        (out / "timing.json").write_text(json.dumps(rows, indent=1) + "\n")
    walls = sorted(r["wall_s"] for r in rows)
    print(f"intersr fuse, three stacks, default settings: median {walls[len(walls) // 2]} s "
          f"(min {walls[0]}, max {walls[-1]}), peak RSS up to "
          f"{max(r['peak_rss_gb'] for r in rows)} GB")
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


def leave_one_out(args) -> int:
    """`intersr bench --fusion --stacks A B [C ...]`: on real stacks with no reference, a
    consistency check (not a quality score): fuse all stacks but one, re-simulate the left-out
    stack from the result through its own profile and registered transform, and compare it
    with the real left-out stack; the same for the average of the registered B-spline stacks
    as a yardstick. PSNR in the left-out stack's own intensity range, over its anatomy."""
    from ..methods.fusion.forward import StackOperator
    from ..methods.fusion.register import register
    from ..methods.fusion.stacks import make_stacks
    from ..volumes.read import read_image

    images = [sitk.Cast(read_image(p)[0], sitk.sitkFloat32) for p in args.stacks]
    upsample = network_prior(run_options.make(no_adapt=True), {})
    rows = []
    for k, name in enumerate(args.stacks):
        rest = [im for j, im in enumerate(images) if j != k]
        fused, report = fusion.fuse(rest, [None] * len(rest), profile="auto", upsample=upsample)
        grid = Grid.of(fused)
        ref_stack, left = make_stacks([rest[0], images[k]], [None, None])
        left = dataclasses.replace(left, thickness=float(left.slice_spacing))
        transform = register(ref_stack, left).transform
        operator = StackOperator(left, grid, transform)
        observed = left.array()
        tfs = fusion.transforms_of(report)
        average = np.mean(fusion.bspline_baselines(rest, tfs, fused), axis=0)
        high = float(np.percentile(observed, 99.5)) or 1.0
        mask = (operator.valid > 0) & (observed > 0.1 * high)
        score = lambda a: float(psnr(observed[mask] / high, a[mask] / high))  # noqa: E731
        rows.append({"left_out": name, "fused": score(operator.forward(
            sitk.GetArrayFromImage(fused))), "bspline_average": score(operator.forward(average))})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out) / "fusion_leave_one_out.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def main(args) -> int:
    """`intersr bench --fusion [DATA] [--out DIR] [--quick] [--volumes a,b] [--cases c,d]`."""
    if args.timing:
        return fusion_timing(args)
    if args.stacks:
        return leave_one_out(args)
    data = args.data or str(DEFAULT_DATA)
    out = os.path.join(args.out, "fusion")
    os.makedirs(out, exist_ok=True)
    volumes = args.volumes.split(",") if args.volumes else (
        [HELD_OUT[0]] if args.quick else list(SEEN + HELD_OUT))
    cases = args.cases.split(",") if args.cases else list(QUICK_CASES if args.quick else CASES)
    volumes = [v.split(".nii")[0] for v in volumes]
    results = []
    for v, name in enumerate(volumes):
        truth = load_truth(os.path.join(data, name + ".nii.gz"),
                           (128, 144, 128) if args.quick else (160, 192, 160))
        for c, case in enumerate(cases):
            r = run_case(truth, case, 1000 * v + c, out, name, False)
            r["split"] = "seen" if name in SEEN else "held-out"
            results.append(r)
            print(summarise([r]).splitlines()[-1], flush=True)
            with open(os.path.join(out, "results.json"), "w") as f:
                json.dump(results, f, indent=1)
    for split in ("seen", "held-out"):
        part = [r for r in results if r["split"] == split]
        if part:
            print(f"== {split}\n" + summarise(part) + "\n" + "\n".join(targets(part)))
    return 0
