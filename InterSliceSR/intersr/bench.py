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

from .degrade import degrade
from .grid import plan
from .metrics import Intensity, data_consistency_db, normaliser, quality
from .pipeline import RunOptions, super_resolve_volume
from .volume import geometry_of, is_isotropic, thick_slice_geometry, to_image, to_volume

DEFAULT_DATA = Path("../shared/data/mr")
INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline,
                 "lanczos": sitk.sitkLanczosWindowedSinc}
# Slices filled by interpolation in the source data (SOURCES.md): never scored.
FILLED_SLICES = {"brain_t1_memprage_fnndsc.nii.gz": (2, 114)}  # (ITK axis, index)


@dataclass(frozen=True)
class Case:
    name: str
    axis: int  # ITK axis made thick
    factor: float
    thickness: float  # slab FWHM in reference voxels
    oblique: bool = False


CASES = [
    Case("z_x2.5", 2, 2.5, 2.5), Case("z_x3", 2, 3, 3), Case("z_x4", 2, 4, 4),
    Case("z_x5_gap", 2, 5, 4), Case("z_x6", 2, 6, 6), Case("y_x4", 1, 4, 4),
    Case("x_x4", 0, 4, 4), Case("oblique_x4", 2, 4, 4, oblique=True),
]
BENCH_ADAPT_SECONDS = 30.0
BENCH_CROP = 128


class PeakRSS:
    """Peak resident memory of this process (and children) while the block runs."""

    def __init__(self, interval: float = 0.02):
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
    thick = degrade(array, 2 - case.axis, case.factor, case.thickness)
    geometry = thick_slice_geometry(geometry_of(reference), case.axis, case.factor)
    image = sitk.GetImageFromArray(thick)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


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


def run_case(reference: sitk.Image, case: Case, adapt_seconds: float, device: str,
             exclude: tuple, png: Path | None) -> dict:
    ref = oblique_copy(reference) if case.oblique else reference
    thick = thick_case(ref, case)
    h = ref.GetSpacing()[case.axis]
    volume = to_volume(thick, force=True, source=case.name)
    options = RunOptions(spacing=h, adapt_seconds=adapt_seconds, device=device)
    rows = {}
    with PeakRSS() as peak:
        start = time.monotonic()
        result = super_resolve_volume(volume, options)
        seconds = time.monotonic() - start
    ours = to_image(result.array, result.geometry)
    ref_array = sitk.GetArrayFromImage(ref)
    np_axis = 2 - case.axis
    n = ours.GetSize()[case.axis]
    ref_crop = np.take(ref_array, np.arange(n), axis=np_axis)
    estimates = {}
    for name, interpolator in INTERPOLATORS.items():
        with PeakRSS() as base_peak:
            t0 = time.monotonic()
            resampled = sitk.Resample(thick, ours, sitk.Transform(), interpolator, 0.0,
                                      sitk.sitkFloat32)
            t = time.monotonic() - t0
        estimates[name] = sitk.GetArrayFromImage(resampled)
        rows[name] = {"seconds": t, "peak_mb": base_peak.peak / 2**20}
    estimates["intersr"] = sitk.GetArrayFromImage(ours)
    rows["intersr"] = {"seconds": seconds, "peak_mb": peak.peak / 2**20,
                       "adapt_steps": result.adaptation.steps,
                       "data_consistency_db": result.data_consistency_db}
    exclude_np = tuple((2 - a, i) for a, i in exclude
                       if not case.oblique and 0 <= i < ref_crop.shape[2 - a])
    thick_canonical = volume.array
    for name, estimate in estimates.items():
        rows[name].update(quality(ref_crop, estimate, exclude_np))
        if name != "intersr":
            canon = to_volume(sitk.GetImageFromArray(estimate), force=True, slice_axis=case.axis)
            rows[name]["data_consistency_db"] = data_consistency_db(
                thick_canonical, canon.array, case.factor, case.thickness)
    if png is not None:
        write_png(png, through_plane_panel(
            [ref_crop, estimates["bspline"], estimates["intersr"]], np_axis, normaliser(ref_crop)))
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


def markdown(results: list[dict], methods: list[str]) -> str:
    lines = ["| volume | case | " + " | ".join(f"{m} PSNR fg" for m in methods)
             + " | intersr - bspline | " + " | ".join(f"{m} SSIM fg" for m in methods)
             + " | bspline s | intersr s | intersr peak MB | DC dB bspline / intersr |",
             "|" + "---|" * (2 + 2 * len(methods) + 5)]
    for r in results:
        rows = r["methods"]
        lines.append(
            f"| {r['volume']} | {r['case']} | "
            + " | ".join(f"{rows[m]['psnr_fg']:.2f}" for m in methods)
            + f" | {rows['intersr']['psnr_fg'] - rows['bspline']['psnr_fg']:+.2f} | "
            + " | ".join(f"{rows[m]['ssim_fg']:.4f}" for m in methods)
            + f" | {rows['bspline']['seconds']:.2f} | {rows['intersr']['seconds']:.1f} | "
            f"{rows['intersr']['peak_mb']:.0f} | {rows['bspline']['data_consistency_db']:.1f} / "
            f"{rows['intersr']['data_consistency_db']:.1f} |")
    lines += ["", "Mean over volumes, per case (PSNR fg in dB):", "",
              "| case | n | " + " | ".join(methods) + " | intersr - bspline (median) | wins |",
              "|" + "---|" * (len(methods) + 4)]
    for case in dict.fromkeys(r["case"] for r in results):
        sel = [r["methods"] for r in results if r["case"] == case]
        gains = [s["intersr"]["psnr_fg"] - s["bspline"]["psnr_fg"] for s in sel]
        lines.append(f"| {case} | {len(sel)} | "
                     + " | ".join(f"{np.mean([s[m]['psnr_fg'] for s in sel]):.2f}" for m in methods)
                     + f" | {np.median(gains):+.2f} | {sum(g > 0 for g in gains)}/{len(gains)} |")
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
        code, seconds, peak = run_engine([str(src), str(dst), "--progress", "none",
                                          "--device", args.device])
        ok = code == 0 and dst.exists()
        written = sitk.ReadImage(str(dst)) if ok else None
        steps = written.GetMetaData("intersr_adapt_steps") if ok else None
        out_size = written.GetSize() if ok else None
    report = {"input_size": list(size), "spacing": list(spacing), "output_size": out_size,
              "intersr_seconds": round(seconds, 1), "intersr_peak_rss_gb": round(peak / 2**30, 2),
              "adapt_steps": steps, "bspline_seconds": round(bspline_s, 2),
              "ratio": round(seconds / bspline_s, 1), "device": args.device,
              "cpus": os.cpu_count(), "exit_code": code}
    print(json.dumps(report, indent=2))
    name = "timing.json" if size == (181, 215, 44) else f"timing_{'x'.join(map(str, size))}.json"
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
    cases = [c for c in CASES if not args.cases or c.name in args.cases.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    adapt_seconds = args.adapt_seconds if args.adapt_seconds is not None else BENCH_ADAPT_SECONDS
    results = []
    methods = list(INTERPOLATORS) + ["intersr"]
    for path in find_volumes(data, names):
        image, crop_start = crop_to_anatomy(sitk.ReadImage(str(path)), args.crop or BENCH_CROP)
        exclude = ()
        if path.name in FILLED_SLICES:
            axis, index = FILLED_SLICES[path.name]
            exclude = ((axis, index - crop_start[axis]),)
        for case in cases:
            stem = path.name.split(".")[0]
            rows = run_case(image, case, adapt_seconds, args.device, exclude,
                            out / f"{stem}_{case.name}.png")
            results.append({"volume": stem, "case": case.name, "methods": rows})
            gain = rows["intersr"]["psnr_fg"] - rows["bspline"]["psnr_fg"]
            print(f"{stem:38s} {case.name:11s} bspline {rows['bspline']['psnr_fg']:6.2f}  "
                  f"intersr {rows['intersr']['psnr_fg']:6.2f}  ({gain:+.2f} dB, "
                  f"{rows['intersr']['seconds']:.0f} s)", flush=True)
            (out / "bench.json").write_text(json.dumps(
                {"adapt_seconds": adapt_seconds, "crop": args.crop or BENCH_CROP,
                 "results": results}, indent=2) + "\n")
    table = markdown(results, methods)
    (out / "bench.md").write_text(table)
    print(table)
    return 0
