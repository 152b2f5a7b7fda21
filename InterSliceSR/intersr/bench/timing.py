"""`intersr bench --timing`: wall time and peak memory of whole `intersr run` processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import SimpleITK as sitk

from ..acquisition.degrade import degrade
from .cases import DEFAULT_DATA, expected_grid


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


def run_engine(arguments: list[str], command: str = "run") -> tuple[int, float, int]:
    """`python -m intersr run ...` (or another command) as a separate process: exit code, wall
    seconds, peak RSS."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "intersr", command, *arguments])
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
