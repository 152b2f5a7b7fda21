"""`intersr bench --backends`: inference time of torch vs ONNX Runtime on the same volume.

For each size: one thick volume (x4 along z, 0.5 x 0.5 x 2 mm, cut from a real MR volume when
DATA has one, else the embedded sample tiled), the shipped network, inference only (no
adaptation), torch then ONNX Runtime in the same process and run; also the time to export a
network to ONNX (what `--backend onnxruntime` pays after adaptation) and the PSNR between
the two outputs. Writes backends.json.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..acquisition.metrics import normaliser
from ..networks.backends import OrtBackend, TorchBackend
from ..networks.infer import super_resolve
from ..resources import SAMPLE, shipped_onnx
from ..volumes.grid import output_positions

SIZES = ((256, 256, 40), (512, 512, 80))
FACTOR = 4.0


def thick_volume(size: tuple[int, int, int], data: Path | None) -> np.ndarray:
    """A canonical (slices, rows, cols) float32 thick volume of `size` (x, y, z)."""
    source = None
    if data is not None and data.is_dir():
        candidates = sorted(p for p in data.iterdir() if p.name.endswith((".nii.gz", ".nrrd")))
        source = candidates[0] if candidates else None
    image = sitk.ReadImage(str(source or SAMPLE), sitk.sitkFloat32)
    # resample the source to the requested grid (content only matters for realism, not timing)
    reference = sitk.Image(list(size), sitk.sitkFloat32)
    physical = np.asarray(image.GetSize()) * np.asarray(image.GetSpacing())
    reference.SetSpacing(tuple(float(v) for v in physical / np.asarray(size)))
    reference.SetOrigin(image.GetOrigin())
    reference.SetDirection(image.GetDirection())
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear)
    return np.ascontiguousarray(sitk.GetArrayFromImage(resampled), np.float32)


def psnr(reference: np.ndarray, estimate: np.ndarray) -> float:
    mse = float(np.mean((reference - estimate) ** 2))
    peak = float(np.abs(reference).max())
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def time_backends(size: tuple[int, int, int], data: Path | None, threads: int) -> dict:
    import torch

    from ..networks.export import export_onnx
    from ..networks.weights import load_pretrained
    volume = thick_volume(size, data)
    volume = normaliser(volume).apply(volume)
    positions = output_positions(volume.shape[0], FACTOR)
    torch.set_num_threads(threads)
    model = load_pretrained().model
    row = {"size": list(size), "output_slices": len(positions), "threads": threads}
    start = time.monotonic()
    torch_out = super_resolve(TorchBackend(model, "cpu"), volume, positions, FACTOR, 1.0)
    row["torch_s"] = round(time.monotonic() - start, 2)
    path, _, _ = shipped_onnx()
    start = time.monotonic()
    ort_out = super_resolve(OrtBackend(path, "cpu", threads=threads), volume, positions,
                            FACTOR, 1.0)
    row["onnxruntime_s"] = round(time.monotonic() - start, 2)
    row["ratio_torch_over_ort"] = round(row["torch_s"] / row["onnxruntime_s"], 3)
    row["agreement_psnr_db"] = round(psnr(torch_out, ort_out), 1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        export_onnx(model, Path(tmp) / "adapted.onnx")
        row["export_s"] = round(time.monotonic() - start, 2)
    return row


def main(args) -> int:
    import onnxruntime
    import torch
    data = Path(args.data) if args.data else Path("../shared/data/mr")
    sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes.split(";")] \
        if getattr(args, "sizes", None) else SIZES
    threads = os.cpu_count() or 1
    report = {"device": "cpu", "cpus": threads, "machine": platform.processor() or
              platform.machine(), "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "note": "inference only, shipped network, "
              "x4; a GPU was not measured", "results": []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        row = time_backends(size, data, threads)
        report["results"].append(row)
        print(json.dumps(row), flush=True)
        (out / "backends.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0
