"""Ablation of the training-pair source (docs/vae.md): B-spline, self-supervised (default),
vae-pairs and the combination, on the bench's simulated thick-slice cases, same run.

"pretrained" is the shipped network without any fine-tuning. Every learned method starts from
the shipped weights and gets the same step budget (the
VAE trains for as many steps again, see vae_pairs.vae_config), seed 0; each case is scored
against its reference with the bench's metrics. Volumes held out from pre-training
(train.HELD_OUT) are reported apart from those seen in it. Results are appended case by case
to --out (JSON), so an interrupted run resumes where it stopped.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/vae_ablation.py --out docs/vae_ablation.json
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/vae_ablation.py --timing   # 181x215x44 x4

--timing runs `intersr run --method vae-pairs` (default budget) as a separate process on the
bench's 181x215x44 x4 timing volume and reports wall time and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from intersr import bench
from intersr.bench import Case, crop_to_anatomy, thick_case
from intersr.metrics import quality
from intersr.pipeline import RunOptions, super_resolve_volume
from intersr.train import HELD_OUT
from intersr.volume import to_image, to_volume

METHODS = ("bspline", "pretrained", "self-supervised", "vae-pairs", "vae-combined")
# matched: the engine's default assumption (Gaussian, FWHM = spacing) is the truth;
# mismatch: a slab thicker than its spacing (FWHM 5 at spacing 4, engine assumes 4) and an
# unstated gap (FWHM 4 at spacing 5).
SETS = {"matched": [Case("z_x4", 2, 4, 4)],
        "mismatch": [Case("z_x4_fwhm5", 2, 4, 5), Case("z_x5_gap", 2, 5, 4)]}
X4_OTHERS = [Case("y_x4", 1, 4, 4), Case("x_x4", 0, 4, 4),
             Case("oblique_x4", 2, 4, 4, oblique=True)]


def run_method(method: str, ref: sitk.Image, thick: sitk.Image, case: Case, steps: int,
               seed: int) -> tuple[np.ndarray, sitk.Image, dict]:
    """One learned method on one case: its output (array and image) and what it cost."""
    h = ref.GetSpacing()[case.axis]
    volume = to_volume(thick, force=True, source=case.name)
    pretrained = method == "pretrained"  # the shipped network as it is, for reference
    options = RunOptions(spacing=h, adapt_steps=steps, seed=seed, device="cpu",
                         method="self-supervised" if pretrained else method,
                         no_adapt=pretrained)
    start = time.monotonic()
    result = super_resolve_volume(volume, options)
    seconds = time.monotonic() - start
    image = to_image(result.array, result.geometry)
    info = {"seconds": round(seconds, 1), "adapt_steps": result.adaptation.steps,
            "vae_steps": int(result.provenance.get("intersr_vae_steps", 0))}
    return sitk.GetArrayFromImage(image), image, info


def score_case(reference: sitk.Image, case: Case, methods: list[str], steps: int,
               seed: int) -> dict:
    ref = bench.oblique_copy(reference) if case.oblique else reference
    thick = thick_case(ref, case)
    ref_array = sitk.GetArrayFromImage(ref)
    rows, grid = {}, None
    for method in [m for m in methods if m != "bspline"]:
        estimate, image, info = run_method(method, ref, thick, case, steps, seed)
        grid = image
        n = image.GetSize()[case.axis]
        crop = np.take(ref_array, np.arange(n), axis=2 - case.axis)
        rows[method] = {**quality(crop, estimate), **info}
    if "bspline" in methods:
        if grid is None:
            raise SystemExit("bspline needs at least one learned method for the output grid")
        t0 = time.monotonic()
        bsp = sitk.Resample(thick, grid, sitk.Transform(), sitk.sitkBSpline, 0.0,
                            sitk.sitkFloat32)
        seconds = time.monotonic() - t0
        n = grid.GetSize()[case.axis]
        crop = np.take(ref_array, np.arange(n), axis=2 - case.axis)
        rows["bspline"] = {**quality(crop, sitk.GetArrayFromImage(bsp)),
                           "seconds": round(seconds, 2)}
    return rows


def table(results: list[dict], methods: list[str]) -> str:
    """Markdown: per-case rows, then means per (set, case, held-out/seen)."""
    lines = ["| set | case | volume | split | " + " | ".join(f"{m} dB" for m in methods)
             + " | " + " | ".join(f"{m} s" for m in methods if m != "bspline") + " |",
             "|" + "---|" * (4 + 2 * len(methods) - 1)]
    for r in results:
        rows = r["methods"]
        lines.append(f"| {r['set']} | {r['case']} | {r['volume']} | {r['split']} | "
                     + " | ".join(f"{rows[m]['psnr_fg']:.2f}" if m in rows else "-"
                                  for m in methods) + " | "
                     + " | ".join(f"{rows[m]['seconds']:.0f}" if m in rows else "-"
                                  for m in methods if m != "bspline") + " |")
    lines += ["", "| set | case | split | n | " + " | ".join(methods)
              + " | vae-pairs - bspline (min) | best | "
              + " | ".join(f"{m} SSIM" for m in methods) + " |",
              "|" + "---|" * (2 * len(methods) + 6)]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["set"], r["case"], r["split"]), []).append(r["methods"])
    for (set_name, case, split), sel in groups.items():
        means = {m: np.mean([s[m]["psnr_fg"] for s in sel]) for m in methods
                 if all(m in s for s in sel)}
        gain = (min(s["vae-pairs"]["psnr_fg"] - s["bspline"]["psnr_fg"] for s in sel)
                if "vae-pairs" in means and "bspline" in means else float("nan"))
        lines.append(f"| {set_name} | {case} | {split} | {len(sel)} | "
                     + " | ".join(f"{means[m]:.2f}" if m in means else "-" for m in methods)
                     + f" | {gain:+.2f} | {max(means, key=means.get)} | "
                     + " | ".join(f"{np.mean([s[m]['ssim_fg'] for s in sel]):.4f}"
                                  if m in means else "-" for m in methods) + " |")
    return "\n".join(lines) + "\n"


def timing(args) -> int:
    image = bench.timing_volume(Path(args.data), (181, 215, 44), (1.0, 1.0, 4.0))
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "thick.nrrd", Path(tmp) / "iso.nrrd"
        sitk.WriteImage(image, str(src))
        code, seconds, peak = bench.run_engine([str(src), str(dst), "--progress", "none",
                                                "--device", "cpu", "--method", "vae-pairs"])
        written = sitk.ReadImage(str(dst)) if code == 0 else None
        meta = {k: written.GetMetaData(k) for k in written.GetMetaDataKeys()
                if k.startswith("intersr_")} if written is not None else {}
    report = {"input_size": [181, 215, 44], "spacing": [1.0, 1.0, 4.0], "method": "vae-pairs",
              "seconds": round(seconds, 1), "peak_rss_gb": round(peak / 2**30, 2),
              "exit_code": code, "cpus": os.cpu_count(),
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
              "output_size": list(written.GetSize()) if written is not None else None,
              "vae_steps": meta.get("intersr_vae_steps"),
              "adapt_steps": meta.get("intersr_adapt_steps")}
    print(json.dumps(report, indent=2))
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if code == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/mr")
    parser.add_argument("--out", default="vae-ablation.json")
    parser.add_argument("--steps", type=int, default=100, help="SR (and VAE) steps per case")
    parser.add_argument("--crop", type=int, default=80)
    parser.add_argument("--sets", default="matched,mismatch",
                        help="comma-separated: matched, mismatch, x4 (y, x, oblique x4)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--volumes", default=None, help="comma-separated file names")
    parser.add_argument("--cases", default=None, help="comma-separated case names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--report", action="store_true",
                        help="only print the tables of the results already in --out")
    args = parser.parse_args()
    if args.timing:
        return timing(args)
    methods = args.methods.split(",")
    sets = {**SETS, "x4": X4_OTHERS}
    out = Path(args.out)
    results = json.loads(out.read_text())["results"] if out.exists() else []
    if args.report:  # --out may list several result files: rows of one case are merged
        merged: dict[tuple, dict] = {}
        for name in args.out.split(","):
            for r in json.loads(Path(name).read_text())["results"]:
                row = merged.setdefault((r["set"], r["case"], r["volume"]), {**r, "methods": {}})
                row["methods"].update(r["methods"])
        print(table(list(merged.values()), methods))
        return 0
    done = {(r["volume"], r["case"]) for r in results}
    names = args.volumes.split(",") if args.volumes else None
    wanted = args.cases.split(",") if args.cases else None
    paths = bench.find_volumes(Path(args.data), names)
    if names:  # in the order given (e.g. held-out and seen interleaved)
        paths.sort(key=lambda path: names.index(path.name))
    for set_name in args.sets.split(","):  # one set over all volumes, then the next
        for case in sets[set_name]:
            if wanted and case.name not in wanted:
                continue
            for path in paths:
                stem = path.name.split(".")[0]
                if (stem, case.name) in done:
                    continue
                image, _ = crop_to_anatomy(sitk.ReadImage(str(path)), args.crop)
                rows = score_case(image, case, methods, args.steps, args.seed)
                results.append({"volume": stem, "set": set_name, "case": case.name,
                                "split": "held-out" if path.name in HELD_OUT else "seen",
                                "methods": rows})
                print(stem, case.name, {m: round(r["psnr_fg"], 2) for m, r in rows.items()},
                      flush=True)
                out.write_text(json.dumps({"steps": args.steps, "crop": args.crop,
                                           "seed": args.seed, "results": results}, indent=1))
    print(table(results, methods))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
