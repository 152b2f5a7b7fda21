"""`intersr bench`: honest quality against interpolation, on simulated thick slices.

For each near-isotropic volume: crop around the anatomy, build thick-slice cases with the
degradation model (factors 2.5, 3, 4, 5 with a gap, 6 along z; x4 along x and y; x4 along z of
an obliquely resampled copy), bring each back to the reference grid with linear, B-spline,
Lanczos and InterSliceSR, and score PSNR / SSIM (DESIGN.md normalisation), seconds and peak
memory. Writes bench.json, bench.md and one PNG per case.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..acquisition.degrade import SliceProfile
from ..acquisition.metrics import normaliser, quality
from ..runners.pipeline import RunOptions, super_resolve_volume
from ..volumes.geometry import to_image
from ..volumes.read import to_volume
from .cases import (BENCH_ADAPT_STEPS, BENCH_CROP, BENCH_SEEDS, CASES, DEFAULT_DATA,
                    INTERPOLATORS, TIKHONOV_LAMBDAS, Case, _split, crop_to_anatomy, filled_in_crop,
                    find_volumes, prepared_reference, reference_at_output, thick_case, tikhonov)
from .images import through_plane_panel, write_png
from .real import real_scans
from .timing import PeakRSS, timing


def run_case(reference: sitk.Image, case: Case, steps: int, seeds: tuple[int, ...],
             device: str, exclude: tuple, png: Path | None,
             method: str = "self-supervised", curve: tuple[int, ...] = (),
             **run_options) -> dict:
    """Every method on one case; InterSliceSR once per seed (median and spread reported).

    run_options: further `RunOptions` for InterSliceSR (e.g. a forced profile and thickness).
    curve: shorter step budgets also scored (first seed), from the same adaptation's kept
    weights (AdaptConfig.keep_at): rows["intersr"]["curve"], one entry per budget.
    """
    ref = prepared_reference(reference, case)
    case = case.in_voxels(ref.GetSpacing()[case.axis])
    thick = thick_case(ref, case)
    voxel = ref.GetSpacing()[case.axis]
    h = voxel * case.target
    header = case.header * voxel if case.header is not None else None
    volume = to_volume(thick, force=True, source=case.name, slice_thickness=header,
                       slice_axis=case.axis)
    np_axis = 2 - case.axis
    runs, outputs = [], []
    for seed in seeds:
        options = RunOptions(spacing=h, adapt_steps=steps, device=device, seed=seed,
                             method=method, **run_options)
        with PeakRSS() as peak:
            start = time.monotonic()
            result = super_resolve_volume(volume, options, keep_at=curve if not runs else ())
            seconds = time.monotonic() - start
        runs.append((result, seconds, peak.peak))
        outputs.append(to_image(result.array, result.geometry))
    ours = outputs[0]
    n = ours.GetSize()[case.axis]
    ref_out = reference_at_output(sitk.GetArrayFromImage(ref), case)
    ref_crop = np.take(ref_out, np.arange(n), axis=np_axis)
    exclude_np = excluded_on_output(exclude, case, ref_crop.shape)
    rows: dict[str, dict] = {}
    estimates = {}
    for name, interpolator in INTERPOLATORS.items():
        t0 = time.monotonic()
        resampled = sitk.Resample(thick, ours, sitk.Transform(), interpolator, 0.0,
                                  sitk.sitkFloat32)
        rows[name] = {"seconds": time.monotonic() - t0}
        estimates[name] = sitk.GetArrayFromImage(resampled)
    # deconvolution with the true profile; lambda picked with the reference (an oracle)
    thick_np = sitk.GetArrayFromImage(thick)
    out_factor = case.factor / case.target
    best = None
    t0 = time.monotonic()
    for lam in TIKHONOV_LAMBDAS:
        est = tikhonov(thick_np, np_axis, n, out_factor, case.fwhm / case.target, case.shape,
                       case.tbw, lam)
        q = quality(ref_crop, est, exclude_np)
        if best is None or q["psnr_fg"] > best[1]["psnr_fg"]:
            best = (lam, q, est)
    rows["deconv"] = {"seconds": (time.monotonic() - t0) / len(TIKHONOV_LAMBDAS),
                      "lambda": best[0], **best[1]}
    estimates["deconv"] = best[2]
    for name in INTERPOLATORS:
        rows[name].update(quality(ref_crop, estimates[name], exclude_np))
    seed_rows = []
    for (result, seconds, peak), image in zip(runs, outputs):
        q = quality(ref_crop, sitk.GetArrayFromImage(image), exclude_np)
        seed_rows.append({**q, "seconds": seconds, "peak_mb": peak / 2**20,
                          "adapt_steps": result.adaptation.steps,
                          "self_consistency_db": result.data_consistency_db})
    psnrs = [r["psnr_fg"] for r in seed_rows]
    estimate = runs[0][0].profile
    rows["intersr"] = {
        "psnr_fg": float(np.median(psnrs)), "psnr_fg_spread": float(np.ptp(psnrs)),
        "psnr_all": float(np.median([r["psnr_all"] for r in seed_rows])),
        "ssim_fg": float(np.median([r["ssim_fg"] for r in seed_rows])),
        "seconds": float(np.median([r["seconds"] for r in seed_rows])),
        "peak_mb": float(max(r["peak_mb"] for r in seed_rows)),
        "self_consistency_db": float(np.median([r["self_consistency_db"] for r in seed_rows])),
        "seeds": seed_rows,
        "profile": {"shape": estimate.shape, "tbw": estimate.tbw,
                    "fwhm_voxels": estimate.fwhm / voxel,
                    "fwhm_error": estimate.fwhm / voxel / case.fwhm - 1,
                    "effective_width_error": estimate.effective_width / voxel / SliceProfile(
                        case.shape, case.fwhm, case.tbw).effective_width - 1,
                    "provenance": runs[0][0].provenance.get("intersr_profile", "")}}
    if curve and runs[0][0].provenance.get("intersr_pretrained_planes"):
        # kept_output runs the kept weights on both passes; such a run keeps the pretrained
        # network on one, so its curve would score another method
        raise ValueError(f"{case.name}: no quality-vs-budget curve where one pass keeps the "
                         "pretrained network (one fine in-plane axis)")
    if curve:
        rows["intersr"]["curve"] = [
            {"steps": k, "adapt_seconds": round(t, 1),
             **quality(ref_crop, kept_output(volume, state, RunOptions(
                 spacing=h, no_adapt=True, device=device, seed=seeds[0], method=method,
                 **run_options)), exclude_np)}
            for k, (state, t) in sorted(runs[0][0].adaptation.kept.items())]
    if png is not None:
        write_png(png, through_plane_panel(
            [ref_crop, estimates["bspline"], estimates["deconv"],
             sitk.GetArrayFromImage(ours)], np_axis, normaliser(ref_crop)))
    return rows


def excluded_on_output(exclude: tuple, case: Case, shape: tuple[int, ...]) -> tuple:
    """(ITK axis, index) slices never scored -> (numpy axis, index) on the output grid (an
    index along the made-thick axis scaled to the output spacing)."""
    if case.oblique:
        return ()
    on_output = [(a, i / case.target if a == case.axis else i) for a, i in exclude]
    return tuple((2 - a, int(round(i))) for a, i in on_output if 0 <= i < shape[2 - a])


def kept_output(volume, state: dict, options: RunOptions) -> np.ndarray:
    """The output a run with these kept weights (fp32, unrounded) gives, as a numpy array."""
    import tempfile
    from dataclasses import replace

    from ..networks.network import build_network
    from ..networks.weights import load_pretrained, save_weights
    config = load_pretrained().config
    model = build_network(config)
    model.load_state_dict(state)
    with tempfile.TemporaryDirectory(prefix="intersr-curve-") as folder:
        save_weights(model, config, Path(folder), "kept.pt", half=False, onnx=False)
        result = super_resolve_volume(volume, replace(options, weights=folder))
    return sitk.GetArrayFromImage(to_image(result.array, result.geometry))


def oracle_case(reference: sitk.Image, case: Case, steps: int, seed: int, device: str = "cpu",
                keep_at: tuple[int, ...] = (), exclude: tuple = (),
                weights: str | None = None) -> dict:
    """The supervised ceiling: the shipped network trained on this very volume's truth.

    Pairs are the true high-resolution reference (on the output grid) and its thick version
    through the TRUE profile along the true slice axis, in the run's own normalisation; the
    same loop, batch and held-out rule as adaptation (fit), from the same shipped weights, up
    to `steps` with early stopping; inference with the true profile. keep_at: the same
    training's shorter budgets, scored too (e.g. the adaptation's own budget). weights: start
    from these instead (a folder with weights.json, as `--weights`).
    """
    import torch

    from ..acquisition.pairs import PlanePairs
    from ..methods.self_supervised import AdaptConfig, fit, held_out_split
    from ..networks.weights import load_pretrained
    ref = prepared_reference(reference, case)
    case = case.in_voxels(ref.GetSpacing()[case.axis])
    thick = thick_case(ref, case)
    voxel = ref.GetSpacing()[case.axis]
    volume = to_volume(thick, force=True, source=case.name, slice_axis=case.axis)
    np_axis = 2 - case.axis
    ref_out = reference_at_output(sitk.GetArrayFromImage(ref), case)
    intensity = normaliser(volume.array)
    fine = np.ascontiguousarray(np.moveaxis(intensity.apply(ref_out), np_axis, 0), np.float32)
    factor, fwhm = case.factor / case.target, case.fwhm / case.target
    samplers, checks = [], []
    for other in (1, 2):
        train, held = held_out_split(fine.shape[3 - other])
        samplers.append(PlanePairs(fine, 0, other, factor, fwhm, fixed=train, shape=case.shape,
                                   tbw=case.tbw))
        checks.append(PlanePairs(fine, 0, other, factor, fwhm, fixed=held, shape=case.shape,
                                 tbw=case.tbw))
    torch.manual_seed(seed)
    model = load_pretrained(weights).model
    budgets = tuple(k for k in keep_at if k < steps) + (steps,)
    trained = fit(model, samplers, checks, AdaptConfig(steps=steps, seed=seed, keep_at=budgets),
                  torch.device(device))
    options = RunOptions(spacing=voxel * case.target, no_adapt=True, device=device, seed=seed,
                         profile=case.shape, thickness=case.fwhm * voxel)
    rows = []
    for k, (state, seconds) in sorted(trained.kept.items()):
        estimate = kept_output(volume, state, options)
        ref_k = np.take(ref_out, np.arange(estimate.shape[np_axis]), axis=np_axis)
        rows.append({"steps": k, "seconds": round(seconds, 1),
                     **quality(ref_k, estimate, excluded_on_output(exclude, case, ref_k.shape))})
    final = rows[-1]
    return {**final, "trained_steps": trained.steps, "stopped_early": trained.stopped_early,
            "curve": rows[:-1]}


def summary(results: list[dict]) -> dict:
    """Median gains per (set, held-out/seen): over B-spline and over the deconvolution."""
    out: dict[str, dict] = {}
    for r in results:
        key = f"{r['set']}|{r['split']}"
        m = r["methods"]
        out.setdefault(key, {"vs_bspline": [], "vs_deconv": [], "spread": []})
        out[key]["vs_bspline"].append(m["intersr"]["psnr_fg"] - m["bspline"]["psnr_fg"])
        out[key]["vs_deconv"].append(m["intersr"]["psnr_fg"] - m["deconv"]["psnr_fg"])
        out[key]["spread"].append(m["intersr"]["psnr_fg_spread"])
    return {k: {"n": len(v["vs_bspline"]),
                "median_gain_over_bspline_db": float(np.median(v["vs_bspline"])),
                "min_gain_over_bspline_db": float(np.min(v["vs_bspline"])),
                "median_gain_over_deconv_db": float(np.median(v["vs_deconv"])),
                "median_seed_spread_db": float(np.median(v["spread"]))} for k, v in out.items()}


def markdown(results: list[dict], methods: list[str]) -> str:
    table = summary(results)
    lines = ["Median over cases, foreground PSNR gain of InterSliceSR (median of its seeds):", "",
             "| set | held-out: n | over B-spline | worst case | over deconvolution | "
             "seen: n | over B-spline | worst case | over deconvolution |", "|" + "---|" * 9]
    for name in dict.fromkeys(r["set"] for r in results):
        cells = []
        for split in ("held-out", "seen"):
            t = table.get(f"{name}|{split}")
            cells += ([str(t["n"]), f"{t['median_gain_over_bspline_db']:+.2f}",
                       f"{t['min_gain_over_bspline_db']:+.2f}",
                       f"{t['median_gain_over_deconv_db']:+.2f}"] if t else ["0", "", "", ""])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| volume | split | case | " + " | ".join(f"{m} PSNR fg" for m in methods)
              + " | intersr seed spread | intersr - bspline | intersr - deconv | "
              + " | ".join(f"{m} SSIM fg" for m in methods)
              + " | intersr s | self-consistency dB (not quality) | estimated profile |",
              "|" + "---|" * (3 + 2 * len(methods) + 6)]
    for r in results:
        m = r["methods"]
        prof = m["intersr"]["profile"]
        lines.append(
            f"| {r['volume']} | {r['split']} | {r['case']} | "
            + " | ".join(f"{m[k]['psnr_fg']:.2f}" for k in methods)
            + f" | {m['intersr']['psnr_fg_spread']:.2f}"
            + f" | {m['intersr']['psnr_fg'] - m['bspline']['psnr_fg']:+.2f}"
            + f" | {m['intersr']['psnr_fg'] - m['deconv']['psnr_fg']:+.2f} | "
            + " | ".join(f"{m[k]['ssim_fg']:.4f}" for k in methods)
            + f" | {m['intersr']['seconds']:.0f} | {m['intersr']['self_consistency_db']:.1f}"
            + f" | {prof['shape']} {prof['fwhm_voxels']:.2f} ({prof['fwhm_error']:+.0%}) |")
    lines += ["", "Slice-profile estimate (`--profile auto`) against the truth: effective width "
              "(`SliceProfile.effective_width`; thick slices hardly show the shape) and, for "
              "information, FWHM:", "",
              "| volume | case | true shape | true FWHM (voxels) | estimated shape | "
              "estimated FWHM | FWHM error | effective width error | within 15 % |",
              "|" + "---|" * 9]
    for r in results:
        c, prof = r["truth"], r["methods"]["intersr"]["profile"]
        width = prof.get("effective_width_error", float("nan"))
        lines.append(f"| {r['volume']} | {r['case']} | {c['shape']} | {c['fwhm']:.2f} | "
                     f"{prof['shape']} | {prof['fwhm_voxels']:.2f} | {prof['fwhm_error']:+.1%} | "
                     f"{width:+.1%} | {'yes' if abs(width) <= 0.15 else 'no'} |")
    return "\n".join(lines) + "\n"


def main(args) -> int:
    if args.timing:
        return timing(args)
    if args.real:
        return real_scans(args)
    data = Path(args.data) if args.data else DEFAULT_DATA
    if not data.is_dir():
        print(f"intersr bench: data folder not found: {data}", file=sys.stderr)
        return 2
    names = args.volumes.split(",") if args.volumes else None
    wanted = args.cases.split(",") if args.cases else None
    unknown = sorted(set(wanted or ()) - {c.name for c in CASES})
    if unknown:
        print(f"intersr bench: unknown case(s) {', '.join(unknown)}; known: "
              + ", ".join(c.name for c in CASES), file=sys.stderr)
        return 2
    cases = [c for c in CASES if not wanted or c.name in wanted]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.adapt_steps if args.adapt_steps is not None else BENCH_ADAPT_STEPS
    seeds = tuple(range(args.seeds)) if args.seeds else BENCH_SEEDS
    results = []
    methods = list(INTERPOLATORS) + ["deconv", "intersr"]
    for path in find_volumes(data, names):
        image, crop_start = crop_to_anatomy(sitk.ReadImage(str(path)), args.crop or BENCH_CROP)
        exclude = filled_in_crop(path.name, crop_start)
        stem = path.name.split(".")[0]
        for case in cases:
            rows = run_case(image, case, steps, seeds, args.device, exclude,
                            out / f"{stem}_{case.name}.png", method=args.method)
            results.append({"volume": stem, "split": _split(stem), "case": case.name,
                            "set": case.set, "truth": {"shape": case.shape, "fwhm": case.fwhm,
                                                       "tbw": case.tbw, "header": case.header},
                            "methods": rows})
            m = rows
            print(f"{stem:32s} {case.name:17s} bspline {m['bspline']['psnr_fg']:6.2f} deconv "
                  f"{m['deconv']['psnr_fg']:6.2f} intersr {m['intersr']['psnr_fg']:6.2f} "
                  f"({m['intersr']['psnr_fg'] - m['bspline']['psnr_fg']:+.2f} dB; spread "
                  f"{m['intersr']['psnr_fg_spread']:.2f}; profile "
                  f"{m['intersr']['profile']['shape']} {m['intersr']['profile']['fwhm_voxels']:.2f}"
                  f" vs {case.shape} {case.fwhm:g}; {m['intersr']['seconds']:.0f} s)", flush=True)
            (out / "bench.json").write_text(json.dumps(
                {"adapt_steps": steps, "seeds": list(seeds), "crop": args.crop or BENCH_CROP,
                 "method": args.method if steps else "pretrained (no adaptation)",
                 "summary": summary(results), "results": results}, indent=2) + "\n")
    table = markdown(results, methods)
    (out / "bench.md").write_text(table)
    print(table)
    return 0
