"""Can the slice profile be told from the thick slices at all? A measurement, per bench case.

For every bench case (`intersr.bench.cases.CASES`) made from every near-isotropic volume (crop 128,
as the bench and the estimator table), the thick slices T made with the TRUE profile are
compared with thick slices made from the SAME reference with a profile of another shape, its
FWHM fitted to reproduce T (bounded 1-D search, least squares over the anatomy). If another
shape at some FWHM reproduces T to within the volume's own uncertainties, no estimator that
sees only T can name the shape, and its FWHM "error" is then set by which shape it names (a box
of width w and a Gaussian of FWHM ~0.7 w give nearly the same thick slices: their transfer
functions agree below the slice Nyquist and differ only in aliased bands where anatomy has
little power). Two yardsticks from the same run, both in PSNR of the normalised thick volume
over the anatomy (higher = smaller difference):

- noise: the thick volume's own noise (Immerkaer's estimator on each thick slice), i.e. what a
  single voxel can resolve;
- anisotropy: how much T changes when the reference's own unequal resolution along its axes is
  removed first (`estimator_table.equalised_resolution`), i.e. a difference that lies in the
  unknown anatomy, not in the profile, and that no estimator can separate from it either.

A wrong shape whose best fit is closer to T than either yardstick is indistinguishable from the
truth. Writes JSON and prints a Markdown table.

--phantom instead runs the estimator itself on the tests' isotropic synthetic phantom (no
reference anisotropy at all) for Gaussian, box and sinc slices of FWHM 4 at x4: its estimate
with the shape free, and its loss at the truth beside the best loss.

    .venv/bin/python scripts/profile_identifiability.py --out docs/results/profile_identifiability.json
    .venv/bin/python scripts/profile_identifiability.py --report --out docs/results/profile_identifiability.json
    .venv/bin/python scripts/profile_identifiability.py --phantom
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.optimize import minimize_scalar
from scipy.signal import convolve2d

sys.path.insert(0, str(Path(__file__).resolve().parent))
from estimator_table import equalised_resolution  # noqa: E402

from intersr.bench.cases import CASES, BENCH_CROP, crop_to_anatomy, find_volumes, _split  # noqa: E402
from intersr.acquisition.degrade import degrade  # noqa: E402
from intersr.acquisition.metrics import foreground_mask, normaliser, psnr  # noqa: E402

ALTERNATIVES = (("gauss", 4.0), ("box", 4.0), ("sinc", 2.0), ("sinc", 4.0), ("sinc", 8.0))
IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def noise_sigma(volume: np.ndarray, axis: int) -> float:
    """Median over the slices along `axis` of Immerkaer's (1996) fast noise estimate."""
    sigmas = []
    for plane in np.moveaxis(volume, axis, 0):
        h, w = plane.shape
        if h < 3 or w < 3:
            continue
        response = np.abs(convolve2d(plane, IMMERKAER, mode="valid")).sum()
        sigmas.append(np.sqrt(np.pi / 2) * response / (6 * (w - 2) * (h - 2)))
    return float(np.median(sigmas))


def name_of(shape: str, tbw: float) -> str:
    return f"sinc{tbw:g}" if shape == "sinc" else shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/mr")
    parser.add_argument("--crop", type=int, default=BENCH_CROP)
    parser.add_argument("--volumes", default="")
    parser.add_argument("--out", default="bench-out/profile_identifiability.json")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--phantom", action="store_true")
    args = parser.parse_args()
    if args.phantom:
        phantom()
        return
    if args.report:
        report(json.loads(Path(args.out).read_text()))
        return
    rows = []
    for path in find_volumes(Path(args.data), [v for v in args.volumes.split(",") if v] or None):
        image, _ = crop_to_anatomy(sitk.ReadImage(str(path), sitk.sitkFloat32), args.crop)
        equalised, sigmas = equalised_resolution(image)
        reference = sitk.GetArrayFromImage(image)
        flat = sitk.GetArrayFromImage(equalised)
        name = path.name.split(".")[0]
        for case in CASES:
            t0 = time.monotonic()
            axis = 2 - case.axis
            truth = degrade(reference, axis, case.factor, case.fwhm, case.shape, case.tbw)
            intensity = normaliser(truth)
            target = intensity.apply(truth)
            mask = foreground_mask(np.clip(target, 0, 1))

            def fit(shape: str, tbw: float) -> tuple[float, float]:
                def cost(fwhm: float) -> float:
                    made = intensity.apply(degrade(reference, axis, case.factor, fwhm, shape, tbw))
                    return float(((made - target)[mask] ** 2).mean())
                res = minimize_scalar(cost, bounds=(0.3 * case.fwhm, 2.0 * case.fwhm),
                                      method="bounded", options={"xatol": 0.005 * case.fwhm})
                return float(res.x), 10 * np.log10(1.0 / max(res.fun, 1e-20))

            alternatives = {}
            for shape, tbw in ALTERNATIVES:
                if shape == case.shape and (shape != "sinc" or tbw == case.tbw):
                    continue
                fwhm, db = fit(shape, tbw)
                alternatives[name_of(shape, tbw)] = {"fwhm_error": round(fwhm / case.fwhm - 1, 3),
                                                     "psnr": round(db, 2)}
            flat_truth = intensity.apply(degrade(flat, axis, case.factor, case.fwhm, case.shape,
                                                 case.tbw))
            # the equalised reference is blurrier overall: compare after a best gain and offset
            design = np.stack([flat_truth[mask], np.ones(mask.sum())], axis=1)
            coef = np.linalg.lstsq(design, target[mask], rcond=None)[0]
            anisotropy = psnr(target, flat_truth * coef[0] + coef[1], mask)
            noise = noise_sigma(target, axis)
            row = {"volume": name, "split": _split(name), "case": case.name,
                   "truth": f"{name_of(case.shape, case.tbw)} {case.fwhm:g}",
                   "truth_shape": case.shape, "alternatives": alternatives,
                   "noise_psnr": round(20 * np.log10(1.0 / noise), 2),
                   "anisotropy_psnr": round(anisotropy, 2), "equalising_sigma_zyx": sigmas,
                   "seconds": round(time.monotonic() - t0, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    report(rows)


def phantom() -> None:
    """The estimator on an isotropic synthetic phantom (Testing/test_profile.py's blobs)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
    from test_profile import blobs
    from intersr.acquisition.profile import estimate_profile

    for shape, tbw in (("gauss", 4.0), ("box", 4.0), ("sinc", 4.0)):
        thick = degrade(blobs(), 0, 4.0, 4.0, shape, tbw)
        free = estimate_profile(thick, (4.0, 1.0, 1.0))
        at_truth = estimate_profile(thick, (4.0, 1.0, 1.0), shapes=(shape,), fwhm_mm=4.0)
        print(f"truth {name_of(shape, tbw)} FWHM 4: estimate {free.profile.describe()} "
              f"(loss {free.loss:.4f}); loss at the true shape and FWHM {at_truth.loss:.4f} (sinc: the "
              f"better of the TBWs searched, {at_truth.profile.tbw:g}); plausible: "
              + "; ".join(p.describe() for p in free.plausible))


def hidden(row: dict, yardstick: str = "anisotropy_psnr") -> dict[str, dict]:
    """The alternatives that reproduce the truth's thick slices more closely than the yardstick
    (the reference's anisotropy, or the noise) changes them."""
    return {k: v for k, v in row["alternatives"].items() if v["psnr"] > row[yardstick]}


def wrong_shapes(row: dict) -> dict[str, dict]:
    """The alternatives of another shape than the truth's (other sinc TBWs are the same shape)."""
    return {k: v for k, v in row["alternatives"].items() if not k.startswith(row["truth_shape"])}


def report(rows: list[dict]) -> None:
    """Per case: the closest wrong shape and the hidden alternative whose FWHM is furthest from
    the truth, beside the yardsticks; then counts per split."""
    def closest(r: dict) -> str:
        wrong = wrong_shapes(r)
        return max(wrong, key=lambda k: wrong[k]["psnr"])

    def widest(r: dict) -> str:
        found = hidden(r)
        if not found:
            return "-"
        k = max(found, key=lambda k: abs(found[k]["fwhm_error"]))
        return f"{k} {found[k]['fwhm_error']:+.0%}, {found[k]['psnr']:.1f}"

    print("| volume (split) | case (truth) | closest wrong shape: FWHM error, PSNR dB | "
          "hidden alternative furthest in FWHM | noise PSNR dB | anisotropy PSNR dB |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        near = r["alternatives"][closest(r)]
        print(f"| {r['volume'].replace('brain_', '')} ({r['split'][0].upper()}) | {r['case']} "
              f"({r['truth']}) | {closest(r)} {near['fwhm_error']:+.0%}, {near['psnr']:.1f} | "
              f"{widest(r)} | {r['noise_psnr']:.1f} | {r['anisotropy_psnr']:.1f} |")
    low, high = 0.85 / 1.15, 1.15 / 0.85  # FWHM ratios one estimate can be within 15 % of
    for split in ("held-out", "seen"):
        sel = [r for r in rows if r["split"] == split]
        if not sel:
            continue
        for yardstick in ("anisotropy_psnr", "noise_psnr"):
            shape_hidden = sum(bool(set(hidden(r, yardstick)) & set(wrong_shapes(r))) for r in sel)
            incompatible = sum(any(not low <= 1 + v["fwhm_error"] <= high
                                   for v in hidden(r, yardstick).values()) for r in sel)
            print(f"{split}, {len(sel)} cases, yardstick {yardstick.split('_')[0]}: a wrong shape "
                  f"is hidden on {shape_hidden}; an alternative no single estimate can be within "
                  f"15 % of together with the truth (FWHM ratio outside [{low:.3f}, {high:.3f}]) "
                  f"is hidden on {incompatible}")
        margin = np.median([r["alternatives"][closest(r)]["psnr"] - r["anisotropy_psnr"]
                            for r in sel])
        wide = sum(any(abs(v["fwhm_error"]) > 0.15 for v in hidden(r).values()) for r in sel)
        print(f"{split}: closest wrong shape vs the anisotropy yardstick: median margin "
              f"{margin:+.1f} dB; an alternative more than 15 % off in FWHM is hidden on {wide}")


if __name__ == "__main__":
    main()
