"""`intersr run` as a function: read, check, adapt, super-resolve, verify, write.

`super_resolve_volume` works on an in-memory `Volume` (the benchmark calls it directly);
`run` adds the file handling and the progress protocol around it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import __version__, memory, protocol
from .adapt import AdaptConfig, AdaptResult, adapt
from .errors import InputError, ResourceError
from .grid import Grid, plan
from .infer import super_resolve
from .metrics import data_consistency_db, normaliser
from .network import NetConfig, build_network
from .options import ADAPT_BATCH, RunOptions, adapts, budget_for, validate
from .progress import Progress
from .volume import Geometry, Volume, check_writable, load_volume, output_geometry, to_image, \
    write_atomic
from .weights import load_pretrained

__all__ = ["RunOptions", "RunResult", "plan_grid", "check_memory", "super_resolve_volume", "run"]


@dataclass
class RunResult:
    array: np.ndarray  # canonical output, input intensity units
    geometry: Geometry
    factor: float
    thickness: float
    adaptation: AdaptResult
    data_consistency_db: float
    weights_sha256: str
    seconds: float
    provenance: dict[str, str] = field(default_factory=dict)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ResourceError("--device cuda was requested but no CUDA GPU is available to "
                            f"PyTorch {torch.__version__}; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def plan_grid(volume: Volume, options: RunOptions) -> Grid:
    """The output grid (the one rule in `intersr.grid`) with the checks users need."""
    g = volume.geometry
    return plan(g.size, g.spacing, target_spacing=options.spacing, factor=options.factor,
                slice_axis=g.slice_axis)


def check_memory(grid: Grid, backend: str = "torch", available: int | None = None) -> int:
    """Refuse up front when the run cannot fit (the estimate the Slicer module shows)."""
    return memory.check(grid, backend, available)


def initial_model(options: RunOptions, log) -> tuple[torch.nn.Module, str]:
    """The shipped (or given) pretrained network; `--weights none` starts from scratch."""
    pretrained = load_pretrained(options.weights)
    if pretrained is None:
        log("intersr: --weights none: starting from scratch (results need a longer adaptation)")
        torch.manual_seed(options.seed)
        return build_network(NetConfig(design=options.design)), ""
    return pretrained.model, pretrained.sha256


def adapt_config(options: RunOptions, device: torch.device) -> AdaptConfig:
    budget = budget_for(options, device.type)
    return AdaptConfig(steps=budget.steps, seconds=budget.seconds,
                       batch=ADAPT_BATCH[device.type], seed=options.seed)


def super_resolve_volume(volume: Volume, options: RunOptions,
                         progress: Progress | None = None) -> RunResult:
    """The whole method on an in-memory canonical volume."""
    start = time.monotonic()
    progress = progress or Progress("none")
    validate(options)
    device = pick_device(options.device)
    grid = plan_grid(volume, options)
    spacing, factor = grid.output_spacing_mm, grid.factor
    geometry = volume.geometry
    s = geometry.slice_spacing
    thickness = options.thickness or volume.slice_thickness or s
    if not np.isfinite(thickness) or thickness <= 0:
        raise InputError(f"slice thickness must be a positive number of mm (got {thickness})")
    positions = grid.positions()
    check_memory(grid)
    torch.manual_seed(options.seed)
    if device.type == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    scale = normaliser(volume.array)
    normalised = volume.array / scale
    model, sha = initial_model(options, progress.log)
    if not adapts(options):
        result = AdaptResult()
    else:
        spacing3 = (s, *geometry.inplane_spacings)
        result = adapt(model, normalised, spacing3, thickness, adapt_config(options, device),
                       device, progress)
    output = super_resolve(model, normalised, positions, factor, thickness / s, device, progress)
    progress.update("check", 0, 1)
    consistency = data_consistency_db(normalised, output, factor, thickness / spacing)
    progress.update("check", 1, 1, data_consistency_db=consistency)
    low, high = float(volume.array.min()), float(volume.array.max())
    output = np.clip(output * scale, low, high)
    out_geometry = output_geometry(geometry, spacing)
    provenance = protocol.provenance(
        method=f"InterSliceSR (SliceINR, {options.method})",
        version=__version__,
        backend="torch",
        weights_sha256=sha or "none (trained from scratch on this volume)",
        profile=options.profile,
        factor=f"{factor:.6g}",
        input_spacing_mm=f"{s:.6g}",
        output_spacing_mm=f"{spacing:.6g}",
        thickness_mm=f"{thickness:.6g}",
        adapt_steps=str(result.steps),
        adapt_final_loss=f"{result.final_loss:.6g}",
        data_consistency_db=f"{consistency:.4g}",
    )
    return RunResult(array=output.astype(np.float32), geometry=out_geometry, factor=factor,
                     thickness=thickness, adaptation=result, data_consistency_db=consistency,
                     weights_sha256=sha, seconds=time.monotonic() - start, provenance=provenance)


def run(input_path: str, output_path: str, options: RunOptions,
        progress: Progress | None = None) -> RunResult:
    """Read INPUT, super-resolve, write OUTPUT atomically (nothing is written on failure)."""
    progress = progress or Progress("none")
    start = time.monotonic()
    check_writable(output_path)
    progress.update("load", 0, 1)
    volume = load_volume(input_path, force=options.force)
    progress.update("load", 1, 1)
    result = super_resolve_volume(volume, options, progress)
    progress.update("write", 0, 1)
    image = to_image(result.array, result.geometry, volume.pixel_id)
    write_atomic(image, output_path, result.provenance)
    progress.update("write", 1, 1)
    result.seconds = time.monotonic() - start
    return result


def describe(result: RunResult) -> str:
    return (f"factor {result.factor:.3g}, thickness {result.thickness:.3g} mm, "
            f"{result.adaptation.steps} adaptation steps (held-out L1 "
            f"{result.adaptation.initial_loss:.4f} -> {result.adaptation.final_loss:.4f}), "
            f"data consistency {result.data_consistency_db:.2f} dB")
