"""`intersr bench`: honest quality and speed against interpolation, on simulated thick slices.

For each near-isotropic volume: crop around the anatomy, build thick-slice cases with the
degradation model (factors 2.5, 3, 4, 5 with a gap, 6 along z; x4 along x and y; x4 along z of
an obliquely resampled copy), bring each back to the reference grid with linear, B-spline,
Lanczos and InterSliceSR, and score PSNR / SSIM (DESIGN.md normalisation), seconds and peak
memory. Writes bench.json, bench.md and one PNG per case.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import SimpleITK as sitk

from .degrade import degrade, profile_matrix
from .grid import plan
from .metrics import Intensity, data_consistency_db, normaliser, quality
from .pipeline import RunOptions, super_resolve_volume
from .resources import HELD_OUT
from .volume import geometry_of, is_isotropic, thick_slice_geometry, to_image, to_volume

DEFAULT_DATA = Path("../shared/data/mr")
INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}
# Slices filled by interpolation in the source data (SOURCES.md): never scored.
FILLED_SLICES = {"brain_t1_memprage_fnndsc.nii.gz": (2, 114)}  # (ITK axis, index)


@dataclass(frozen=True)
class Case:
    """A simulated acquisition: true profile, what the header claims, and what is asked for.

    fwhm, header and factor are in reference voxels; header None: the header states no
    thickness. target: output spacing in reference voxels (1: the reference grid; above 1:
    slices as acquired at that spacing, the reference made so with the same profile shape).
    voxel_mm relabels the reference's voxel size (a knee-like protocol with sub-mm pixels).
    """
    name: str
    set: str  # "matched" (the profile the method assumed before) or "mismatch"
    factor: float
    shape: str
    fwhm: float
    header: float | None
    tbw: float = 4.0
    axis: int = 2  # ITK axis made thick
    target: float = 1.0
    voxel_mm: float | None = None
    oblique: bool = False


CASES = [
    Case("gauss_x4", "matched", 4, "gauss", 4.0, 4.0),
    Case("box_x4", "mismatch", 4, "box", 4.0, 4.0),
    Case("sinc_x4", "mismatch", 4, "sinc", 4.0, 4.0, tbw=4.0),
    Case("sinc8_thick20_x4", "mismatch", 4, "sinc", 4.8, 4.0, tbw=8.0),
    Case("gap_x4", "mismatch", 4, "box", 3.0, None),
    Case("sinc2_y_x4", "mismatch", 4, "sinc", 4.0, 4.0, tbw=2.0, axis=1),
    Case("knee_x9_to3", "knee", 9, "sinc", 9.0, 9.0, tbw=4.0, target=3.0, voxel_mm=0.4),
]
BENCH_ADAPT_STEPS = 350  # what the previous 30 s budget ran on this machine, unloaded
BENCH_CROP = 128
BENCH_SEEDS = (0, 1, 2)
TIKHONOV_LAMBDAS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


class PeakRSS:
    """Peak resident memory of this process (and children) while the block runs."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _rss(self) -> int:
        proc = psutil.Process()
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def crop_to_anatomy(image: sitk.Image, size: int) -> tuple[sitk.Image, tuple[int, int, int]]:
    """Bounding box of the anatomy, then a central crop of at most `size` voxels per axis."""
    array = sitk.GetArrayViewFromImage(image)
    mask = normaliser(array).apply(array) > 0.1
    lo, hi = [], []
    for np_axis in (2, 1, 0):  # ITK order
        other = tuple(a for a in range(3) if a != np_axis)
        idx = np.flatnonzero(mask.any(axis=other))
        a, b = (idx[0], idx[-1] + 1) if idx.size else (0, array.shape[np_axis])
        centre, half = (a + b) // 2, min(size, b - a) // 2
        start = max(0, min(centre - half, array.shape[np_axis] - 2 * half))
        lo.append(int(start))
        hi.append(int(start + 2 * half))
    cropped = sitk.RegionOfInterest(image, [h - l for l, h in zip(lo, hi)], lo)
    return sitk.Cast(cropped, sitk.sitkFloat32), tuple(lo)


def oblique_copy(image: sitk.Image) -> sitk.Image:
    """The reference resampled (B-spline) onto a grid rotated 20 and 12 degrees."""
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(np.deg2rad(20.0), np.deg2rad(12.0), 0.0)
    matrix = np.asarray(rotation.GetMatrix()).reshape(3, 3)
    direction = matrix @ np.asarray(image.GetDirection()).reshape(3, 3)
    size = np.asarray(image.GetSize())
    spacing = np.asarray(image.GetSpacing())
    centre = image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist())
    origin = np.asarray(centre) - direction @ ((size - 1) / 2 * spacing)
    grid = sitk.Image(image.GetSize(), sitk.sitkFloat32)
    grid.SetSpacing(image.GetSpacing())
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin(origin.tolist())
    return sitk.Resample(image, grid, sitk.Transform(), sitk.sitkBSpline, 0.0, sitk.sitkFloat32)


def thick_case(reference: sitk.Image, case: Case) -> sitk.Image:
    """Simulated thick-slice acquisition of `reference` (the one degradation model)."""
    array = sitk.GetArrayFromImage(reference)
    thick = degrade(array, 2 - case.axis, case.factor, case.fwhm, case.shape, case.tbw)
    geometry = thick_slice_geometry(geometry_of(reference), case.axis, case.factor)
    image = sitk.GetImageFromArray(thick)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def tikhonov(thick: np.ndarray, np_axis: int, n_out: int, factor: float, fwhm: float,
             shape: str, tbw: float, lam: float) -> np.ndarray:
    """Deconvolution baseline: argmin |A x - y|^2 + lam |D x|^2 along the slice axis, with A
    the TRUE profile (in output voxels) and D first differences; one solve for all lines."""
    a = profile_matrix(n_out, factor, fwhm, shape, tbw)
    d = np.diff(np.eye(n_out), axis=0)
    op = np.linalg.solve(a.T @ a + lam * d.T @ d, a.T).astype(np.float32)  # (n_out, n_slabs)
    moved = np.moveaxis(thick.astype(np.float32), np_axis, 0)[: a.shape[0]]
    return np.ascontiguousarray(np.moveaxis(np.tensordot(op, moved, axes=(1, 0)), 0, np_axis))


def write_png(path: Path, gray: np.ndarray) -> None:
    """Minimal 8-bit grayscale PNG writer (no imaging dependency)."""
    data = np.clip(gray * 255 + 0.5, 0, 255).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in data)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", data.shape[1], data.shape[0], 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def through_plane_panel(arrays: list[np.ndarray], np_axis: int, intensity: Intensity,
                        upsample: int = 2) -> np.ndarray:
    """The same through-plane slice (containing the thick axis, vertical) of each array."""
    other = 2 if np_axis != 2 else 1
    fixed = 3 - np_axis - other
    panels = []
    for array in arrays:
        index = array.shape[fixed] // 2
        plane = np.moveaxis(array, (fixed, np_axis, other), (0, 1, 2))[index]
        plane = np.clip(intensity.apply(plane), 0, 1)[::-1]
        plane = np.kron(plane, np.ones((upsample, upsample)))
        panels.append(np.pad(plane, ((0, 0), (0, 4)), constant_values=1.0))
    return np.concatenate(panels, axis=1)


def reference_at_output(ref_array: np.ndarray, case: Case) -> np.ndarray:
    """The reference on the output grid: itself, or slices acquired at the target spacing."""
    if case.target <= 1:
        return ref_array
    ratio = case.fwhm / case.factor
    return degrade(ref_array, 2 - case.axis, case.target, ratio * case.target, case.shape,
                   case.tbw)


def prepared_reference(reference: sitk.Image, case: Case) -> sitk.Image:
    ref = oblique_copy(reference) if case.oblique else reference
    if case.voxel_mm is not None:
        ref = sitk.Image(ref)
        ref.SetSpacing((case.voxel_mm,) * 3)
    return ref


def run_case(reference: sitk.Image, case: Case, steps: int, seeds: tuple[int, ...],
             device: str, exclude: tuple, png: Path | None,
             method: str = "self-supervised", **run_options) -> dict:
    """Every method on one case; InterSliceSR once per seed (median and spread reported).

    run_options: further `RunOptions` for InterSliceSR (e.g. a forced profile and thickness).
    """
    ref = prepared_reference(reference, case)
    thick = thick_case(ref, case)
    voxel = ref.GetSpacing()[case.axis]
    h = voxel * case.target
    header = case.header * voxel if case.header is not None else None
    volume = to_volume(thick, force=True, source=case.name, slice_thickness=header)
    np_axis = 2 - case.axis
    runs, outputs = [], []
    for seed in seeds:
        options = RunOptions(spacing=h, adapt_steps=steps, device=device, seed=seed,
                             method=method, **run_options)
        with PeakRSS() as peak:
            start = time.monotonic()
            result = super_resolve_volume(volume, options)
            seconds = time.monotonic() - start
        runs.append((result, seconds, peak.peak))
        outputs.append(to_image(result.array, result.geometry))
    ours = outputs[0]
    n = ours.GetSize()[case.axis]
    ref_out = reference_at_output(sitk.GetArrayFromImage(ref), case)
    ref_crop = np.take(ref_out, np.arange(n), axis=np_axis)
    exclude_np = tuple((2 - a, int(round(i / case.target))) for a, i in exclude
                       if not case.oblique and 0 <= i / case.target < ref_crop.shape[2 - a])
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
                    "provenance": runs[0][0].provenance.get("intersr_profile", "")}}
    if png is not None:
        write_png(png, through_plane_panel(
            [ref_crop, estimates["bspline"], estimates["deconv"],
             sitk.GetArrayFromImage(ours)], np_axis, normaliser(ref_crop)))
    return rows


def find_volumes(folder: Path, names: list[str] | None) -> list[Path]:
    paths = []
    for path in sorted(folder.iterdir()):
        if not path.name.endswith((".nii.gz", ".nii", ".nrrd", ".mha")):
            continue
        if names and path.name not in names:
            continue
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        if reader.GetDimension() == 3 and is_isotropic(reader.GetSpacing()):
            paths.append(path)
    return paths


def _split(volume: str) -> str:
    return "held-out" if any(volume == h.split(".")[0] for h in HELD_OUT) else "seen"


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
    lines += ["", "Slice-profile estimate (`--profile auto`) against the truth:", "",
              "| volume | case | true shape | true FWHM (voxels) | estimated shape | "
              "estimated FWHM | error | within 15 % | shape right |", "|" + "---|" * 9]
    for r in results:
        c, prof = r["truth"], r["methods"]["intersr"]["profile"]
        lines.append(f"| {r['volume']} | {r['case']} | {c['shape']} | {c['fwhm']:.2f} | "
                     f"{prof['shape']} | {prof['fwhm_voxels']:.2f} | {prof['fwhm_error']:+.1%} | "
                     f"{'yes' if abs(prof['fwhm_error']) <= 0.15 else 'no'} | "
                     f"{'yes' if prof['shape'] == c['shape'] else 'no'} |")
    return "\n".join(lines) + "\n"


def run_engine(arguments: list[str]) -> tuple[int, float, int]:
    """`python -m intersr run ...` as a separate process: exit code, wall seconds, peak RSS."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "intersr", "run", *arguments])
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, psutil.Process(proc.pid).memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    return proc.returncode, time.monotonic() - t0, peak


def timing_volume(data: Path, size: tuple[int, int, int], spacing: tuple[float, float, float],
                  factor: int = 4) -> sitk.Image:
    """A thick-slice volume of `size` (x, y, z) made from a real scan (zoomed to fit) at x4."""
    from scipy import ndimage

    source = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "brain_t1_seg3d.nii.gz"),
                                                   sitk.sitkFloat32))
    fine_shape = (size[2] * factor, size[1], size[0])
    zoomed = ndimage.zoom(source, [f / s for f, s in zip(fine_shape, source.shape)], order=1)
    thick = degrade(zoomed[: fine_shape[0], : fine_shape[1], : fine_shape[2]], 0, factor, factor)
    image = sitk.GetImageFromArray(thick)
    image.SetSpacing(spacing)
    return image


def timing(args) -> int:
    """Default `intersr run` as a real subprocess: wall time and peak RSS, B-spline beside it."""
    data = Path(args.data) if args.data else DEFAULT_DATA
    size = tuple(int(v) for v in args.timing_size.split(","))
    spacing = (1.0, 1.0, 4.0) if size == (181, 215, 44) else (0.5, 0.5, 2.0)
    image = timing_volume(data, size, spacing)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "thick.nrrd", Path(tmp) / "iso.nrrd"
        sitk.WriteImage(image, str(src))
        grid = expected_grid(image, spacing[2] / 4)
        t0 = time.monotonic()
        bsp = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkBSpline, 0.0, sitk.sitkFloat32)
        bspline_s = time.monotonic() - t0
        del bsp
        method = getattr(args, "method", "self-supervised")
        code, seconds, peak = run_engine([str(src), str(dst), "--progress", "none",
                                          "--device", args.device, "--method", method])
        ok = code == 0 and dst.exists()
        written = sitk.ReadImage(str(dst)) if ok else None
        steps = written.GetMetaData("intersr_adapt_steps") if ok else None
        out_size = written.GetSize() if ok else None
    report = {"input_size": list(size), "spacing": list(spacing), "output_size": out_size,
              "intersr_seconds": round(seconds, 1), "intersr_peak_rss_gb": round(peak / 2**30, 2),
              "adapt_steps": steps, "bspline_seconds": round(bspline_s, 2),
              "ratio": round(seconds / bspline_s, 1), "device": args.device, "method": method,
              "cpus": os.cpu_count(), "exit_code": code}
    print(json.dumps(report, indent=2))
    name = "timing.json" if size == (181, 215, 44) else f"timing_{'x'.join(map(str, size))}.json"
    if method != "self-supervised":
        name = name.replace(".json", f"_{method}.json")
    (out / name).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1


def expected_grid(thick: sitk.Image, spacing: float) -> sitk.Image:
    """The contract's output grid as an image, from the one grid rule (`intersr.grid`).

    The rule itself is tested against DESIGN.md's numbers in Testing/test_grid.py; what the
    benchmark checks here is that the engine's written file lands on that grid.
    """
    g = plan(thick.GetSize(), thick.GetSpacing(), target_spacing=spacing, check=False)
    grid = sitk.Image(list(g.output_size), sitk.sitkUInt8)
    grid.SetSpacing(g.output_spacing)
    grid.SetDirection(thick.GetDirection())
    grid.SetOrigin(g.output_origin(thick.GetOrigin(), thick.GetDirection()))
    return grid


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
        exclude = ()
        if path.name in FILLED_SLICES:
            axis, index = FILLED_SLICES[path.name]
            exclude = ((axis, index - crop_start[axis]),)
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
