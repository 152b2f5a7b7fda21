"""Fit the confidence map's calibration on the SEEN bench volumes, or measure it on the HELD-OUT.

    # fit: writes InterSliceSR/intersr/data/models/confidence.json (about 2 min on 2 busy CPU cores)
    PYTHONPATH=InterSliceSR python scripts/confidence_eval.py --fit --data ../shared/data/mr
    # measure: writes bench-out/confidence.json and prints the tables (about 4 min)
    PYTHONPATH=InterSliceSR python scripts/confidence_eval.py --data ../shared/data/mr
    # the same on runs that adapt as the default run does on the CPU (500 steps; about 25 min)
    PYTHONPATH=InterSliceSR python scripts/confidence_eval.py --data ../shared/data/mr \
        --adapt-steps 500 --out docs/results/confidence_adapted.json
    # the sub-mm clinical series (non-brain; one fine in-plane axis), default adaptation
    PYTHONPATH=InterSliceSR python scripts/confidence_eval.py --data ../shared/data/mr \
        --submm --adapt-steps 500 --out docs/results/confidence_submm.json
    # cost of the map alone on an output of this size (slices, rows, cols): seconds (median of
    # 3) and peak memory beyond its inputs, in output-sized float32 arrays
    PYTHONPATH=InterSliceSR python scripts/confidence_eval.py --time 160,256,256

Cases: the bench's x4 thick-slice simulations (`intersr.bench.cases`: gauss_x4 matched,
box_x4, sinc_x4, sinc2_y_x4 mismatch) of a 96-voxel crop around the anatomy, run with the shipped
network alone (`no_adapt`, ONNX Runtime; `--adapt-steps N`: adapted for N steps) through
`runners.pipeline.super_resolve_volume`, i.e. the map `intersr run --confidence` writes. The
true error: |output - reference| after the bench's normalisation (`acquisition.metrics`: the
reference's 0.5th..99.5th percentiles -> 0..1, clipped), on the bench's foreground mask. Seen
and held-out volumes never mix (`intersr.resources.HELD_OUT`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.stats import spearmanr

from intersr.acquisition.metrics import foreground_mask, normalise, normaliser
from intersr.bench.cases import (CASES, DEFAULT_DATA, SUBMM_CASES, SUBMM_CROP, SUBMM_VOLUMES,
                                 crop_to_anatomy, prepared_reference, reference_at_output,
                                 thick_case)
from intersr.methods import confidence as conf
from intersr.options import make
from intersr.resources import HELD_OUT
from intersr.runners.pipeline import super_resolve_volume
from intersr.volumes.geometry import to_image
from intersr.volumes.grid import output_positions
from intersr.volumes.read import to_volume

SEEN = ("brain_t1_eun_fnndsc_8bit", "brain_t1_memprage_fnndsc", "brain_t1_seg3d")
CASE_NAMES = ("gauss_x4", "box_x4", "sinc_x4", "sinc2_y_x4")
CROP = 96
SAMPLES = 40000  # foreground voxels per case (random, seed 0) for the fit and Spearman
FIT_COMMAND = "python scripts/confidence_eval.py --fit"
PROVISIONAL = {"bias": 0.0, "terms": {}, "table": {"score": [0.0, 1.0], "error": [0.0, 1.0]}}


def run(path: Path, case, crop: int, adapt_steps: int = 0) -> dict:
    """One case: reference, output, map, the two passes' spread, all as numpy (z, y, x)."""
    image, _ = crop_to_anatomy(sitk.ReadImage(str(path)), crop)
    ref = prepared_reference(image, case)
    voxel = ref.GetSpacing()[case.axis]
    case = case.in_voxels(voxel)  # the sub-mm cases are stated in mm
    thick = thick_case(ref, case)
    volume = to_volume(thick, force=True, source=case.name, slice_thickness=case.header * voxel,
                       slice_axis=case.axis)  # as the bench: the spine's own 7.5 mm axis is thicker
    budget = {"adapt_steps": adapt_steps} if adapt_steps else {"no_adapt": True}
    result = super_resolve_volume(volume, make(spacing=case.target * voxel, **budget),
                                  confidence=True)
    g = result.geometry
    m = result.array.shape[0]
    np_axis = 2 - case.axis
    as_np = lambda a: sitk.GetArrayFromImage(to_image(a, g))  # noqa: E731
    ref_out = reference_at_output(sitk.GetArrayFromImage(ref), case)
    reference = np.take(ref_out, np.arange(m), axis=np_axis)
    intensity = normaliser(reference)
    r, est = normalise(reference, intensity), normalise(as_np(result.array), intensity)
    positions = output_positions(volume.array.shape[0], result.factor)
    # features as the pipeline sees them (the input's normalisation)
    inner = normaliser(volume.array)
    feats = {name: as_np(np.ascontiguousarray(f)) for name, f in conf.features(
        inner.apply(volume.array), inner.apply(result.array), result.spread, positions)}
    return {"error": np.abs(est - r), "fg": foreground_mask(r), "map": as_np(result.confidence),
            "features": feats, "distance": feats["distance"]}


def leave_one_out_mean(error: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian local mean of `error` with the voxel's own weight taken out (renormalised)."""
    impulse = np.zeros((9, 9, 9))
    impulse[4, 4, 4] = 1.0
    w0 = float(ndimage.gaussian_filter(impulse, sigma)[4, 4, 4])
    return (ndimage.gaussian_filter(error, sigma) - w0 * error) / (1.0 - w0)


def cases_of(names: tuple[str, ...]):
    return [c for c in CASES if c.name in names]


def sample(mask: np.ndarray, n: int) -> np.ndarray:
    idx = np.flatnonzero(mask.ravel())
    return np.random.default_rng(0).choice(idx, min(n, idx.size), replace=False)


def fit(data: Path, crop: int) -> dict:
    # the pipeline's map needs a calibration (of this format); its value is not used here
    # (restored afterwards, also on failure: main writes the new one, whole, once fitted)
    before = conf.CALIBRATION.read_text() if conf.CALIBRATION.exists() else None
    conf.CALIBRATION.write_text(json.dumps(PROVISIONAL))
    try:
        return fitted(data, crop)
    finally:
        if before is None:
            conf.CALIBRATION.unlink(missing_ok=True)
        else:
            conf.CALIBRATION.write_text(before)


def fitted(data: Path, crop: int) -> dict:
    samples = []
    for name in SEEN:
        for case in cases_of(CASE_NAMES):
            t0 = time.monotonic()
            c = run(data / f"{name}.nii.gz", case, crop)
            idx = sample(c["fg"], SAMPLES)
            samples.append(({k: v.ravel()[idx] for k, v in c["features"].items()},
                            c["error"].ravel()[idx]))
            print(f"{name} {case.name}: {time.monotonic() - t0:.0f} s", flush=True)
    calibration = conf.fit(samples, tuple(conf.FEATURES))
    calibration.update({
        "unit": conf.UNIT, "features": list(conf.FEATURES), "eps": conf.EPS,
        "fitted_on": f"seen volumes {', '.join(SEEN)}; cases {', '.join(CASE_NAMES)}; "
                     f"{crop}-voxel crops; shipped network without adaptation",
        "command": FIT_COMMAND})
    return calibration


def evaluate(data: Path, crop: int, adapt_steps: int = 0, submm: bool = False) -> dict:
    """The held-out brain cases, or (submm) the sub-mm clinical series' cases (seen by the
    shipped network in pre-training, never by the map's calibration)."""
    rows, pooled_map, pooled_err = [], [], []
    volumes = SUBMM_VOLUMES if submm else HELD_OUT
    cases = SUBMM_CASES if submm else cases_of(CASE_NAMES)
    for name in (h.split(".")[0] for h in volumes):
        for case in cases:
            c = run(data / f"{name}.nii.gz", case, crop, adapt_steps)
            fg = c["fg"]
            idx = sample(fg, SAMPLES)
            pred, err = c["map"].ravel()[idx], c["error"].ravel()[idx]
            # the local mean |error| (Gaussian, sigma 1 voxel): what a smooth map can predict at
            # best; its own rank correlation with |error| is the ceiling the reference's noise
            # leaves to any smooth map
            local = ndimage.gaussian_filter(c["error"], 1.0).ravel()[idx]
            # the same without the voxel itself (leave-one-out), at sigma 1 and 2 voxels: what
            # knowing the TRUE error everywhere around a voxel, but not at it, predicts
            loo = {s: leave_one_out_mean(c["error"], s).ravel()[idx] for s in (1.0, 2.0)}
            centre, between = fg & (c["distance"] < conf.CENTRE), fg & (c["distance"] >= conf.CENTRE)
            rows.append({"volume": name, "case": case.name,
                         "spearman": float(spearmanr(pred, err).statistic),
                         "spearman_local_error": float(spearmanr(pred, local).statistic),
                         "ceiling_local_error": float(spearmanr(local, err).statistic),
                         "ceiling_loo1": float(spearmanr(loo[1.0], err).statistic),
                         "ceiling_loo2": float(spearmanr(loo[2.0], err).statistic),
                         "map_centre": float(c["map"][centre].mean()),
                         "map_between": float(c["map"][between].mean()),
                         "error_centre": float(c["error"][centre].mean()),
                         "error_between": float(c["error"][between].mean()),
                         "map_mean": float(pred.mean()), "error_mean": float(err.mean())})
            pooled_map.append(pred)
            pooled_err.append(err)
            r = rows[-1]
            print(f"{name:36s} {case.name:11s} rho {r['spearman']:.3f} (local "
                  f"{r['spearman_local_error']:.3f}, ceiling {r['ceiling_local_error']:.3f})  map centre "
                  f"{r['map_centre']:.4f} between {r['map_between']:.4f}  error centre "
                  f"{r['error_centre']:.4f} between {r['error_between']:.4f}", flush=True)
    pred, err = np.concatenate(pooled_map), np.concatenate(pooled_err)
    edges = np.quantile(pred, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, 9)
    reliability = [{"decile": d + 1, "predicted": float(pred[which == d].mean()),
                    "observed": float(err[which == d].mean()), "n": int((which == d).sum())}
                   for d in range(10)]
    rhos = [r["spearman"] for r in rows]
    return {"crop": crop, "cases": [c.name for c in cases], "volumes": list(volumes),
            "split": "sub-mm clinical series (the shipped network saw them in pre-training; the "
                     "calibration did not)" if submm else "held-out",
            "adaptation": (f"{adapt_steps} steps (the default run's CPU budget is 500 steps or "
                           "75 s)" if adapt_steps else "none (shipped network, ONNX Runtime)"),
            "summary": {"spearman_median": float(np.median(rhos)), "spearman_min": float(min(rhos)),
                        "spearman_max": float(max(rhos)),
                        "spearman_local_error_median": float(np.median(
                            [r["spearman_local_error"] for r in rows])),
                        "ceiling_median": float(np.median([r["ceiling_local_error"] for r in rows])),
                        "ceiling_loo1_median": float(np.median([r["ceiling_loo1"] for r in rows])),
                        "ceiling_loo2_median": float(np.median([r["ceiling_loo2"] for r in rows])),
                        "centre_lower_every_case": all(r["map_centre"] < r["map_between"]
                                                       for r in rows)},
            "rows": rows, "reliability": reliability}


def cost(size: tuple[int, int, int], repeats: int = 3) -> dict:
    """Seconds and peak extra memory (tracemalloc: numpy reports its arrays) of
    `confidence_map` on a smooth random output of `size`, thick slices at x4."""
    import tracemalloc
    rng = np.random.default_rng(0)
    positions = output_positions(size[0] // 4, 4.0)
    size = (len(positions), *size[1:])
    output = ndimage.gaussian_filter(rng.random(size, dtype=np.float32), 2.0)
    thick = np.ascontiguousarray(output[::4])
    spread = np.abs(ndimage.gaussian_filter(rng.standard_normal(size).astype(np.float32), 1.0))
    calibration = conf.load_calibration()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        conf.confidence_map(thick, output, spread, positions, calibration)
        seconds.append(time.perf_counter() - t0)
    tracemalloc.start()
    conf.confidence_map(thick, output, spread, positions, calibration)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"size": list(size), "seconds_median": float(np.median(seconds)),
            "seconds": seconds, "peak_output_arrays": peak / output.nbytes}


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [f"Spearman rho (map vs true |error|, foreground): median {s['spearman_median']:.2f} "
             f"[{s['spearman_min']:.2f}, {s['spearman_max']:.2f}]; against the local mean |error| "
             f"(sigma 1 voxel) {s['spearman_local_error_median']:.2f}; ceiling (local mean "
             f"|error| vs |error|) {s['ceiling_median']:.2f}, leaving the voxel out "
             f"{s['ceiling_loo1_median']:.2f} (sigma 2: {s['ceiling_loo2_median']:.2f}); slab centres lower on every "
             f"case: {'yes' if s['centre_lower_every_case'] else 'no'}", "",
             "| volume | case | Spearman rho | vs local mean error | ceiling | ceiling, voxel left "
             "out (sigma 1 / 2) | map: centre | map: in-between | error: centre | "
             "error: in-between |", "|---" * 10 + "|"]
    lines += [f"| {r['volume']} | {r['case']} | {r['spearman']:.3f} | "
              f"{r['spearman_local_error']:.3f} | {r['ceiling_local_error']:.3f} | "
              f"{r['ceiling_loo1']:.3f} / {r['ceiling_loo2']:.3f} | {r['map_centre']:.4f} | "
              f"{r['map_between']:.4f} | {r['error_centre']:.4f} | {r['error_between']:.4f} |"
              for r in result["rows"]]
    lines += ["", "Reliability (all held-out cases pooled, deciles of the map):", "",
              "| decile | predicted |error| | observed mean |error| |", "|---|---|---|"]
    lines += [f"| {r['decile']} | {r['predicted']:.4f} | {r['observed']:.4f} |"
              for r in result["reliability"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--fit", action="store_true", help="fit on the seen volumes")
    parser.add_argument("--crop", type=int, default=CROP)
    parser.add_argument("--out", default="bench-out/confidence.json")
    parser.add_argument("--adapt-steps", type=int, default=0, metavar="N",
                        help="measure on runs adapted for N steps (the calibration is fitted "
                             "without adaptation)")
    parser.add_argument("--submm", action="store_true",
                        help="measure on the bench's sub-mm clinical cases instead (crop "
                             f"{SUBMM_CROP})")
    parser.add_argument("--time", metavar="S,R,C", help="only time the map on this output size")
    args = parser.parse_args()
    if args.time:
        print(json.dumps(cost(tuple(int(v) for v in args.time.split(","))), indent=1))
        return 0
    data = Path(args.data)
    if args.fit:
        calibration = fit(data, args.crop)
        partial = conf.CALIBRATION.with_suffix(".json.partial")
        partial.write_text(json.dumps(calibration, indent=1) + "\n")
        os.replace(partial, conf.CALIBRATION)
        print(json.dumps({n: t["heights"] for n, t in calibration["terms"].items()}))
        return 0
    result = evaluate(data, SUBMM_CROP if args.submm else args.crop, args.adapt_steps,
                      args.submm)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
