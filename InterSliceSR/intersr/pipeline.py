"""`intersr run` as a function: read, check, adapt, super-resolve, verify, write.

`super_resolve_volume` works on an in-memory `Volume` (the benchmark calls it directly);
`run` adds the file handling and the progress protocol around it.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import psutil
import torch

from . import __version__
from .adapt import AdaptConfig, AdaptResult, adapt, inplane_samplers
from .errors import InputError, ResourceError, WeightsError
from .infer import super_resolve
from .metrics import data_consistency_db, normaliser
from .network import NetConfig, build_network
from .progress import Progress
from .vae_pairs import train_on_vae_pairs
from .volume import (ISOTROPY_TOLERANCE, Geometry, Volume, check_writable, is_isotropic,
                     load_volume, output_geometry, output_positions, to_image, write_atomic)
from .weights import MANIFEST, load_pretrained, models_dir

# What each --method trains the network on, as provenance records it.
METHOD_NAMES = {
    "self-supervised": "InterSliceSR (SliceINR, self-supervised adaptation)",
    "vae-pairs": "InterSliceSR (SliceINR, fine-tuned on VAE-synthesised pairs, Xuan et al. 2021)",
    "vae-combined": "InterSliceSR (SliceINR, VAE-synthesised + in-plane self-supervised pairs)",
}

# Adaptation budget when none is given: minutes on a laptop CPU, seconds of work on a GPU.
DEFAULT_BUDGET = {"cpu": AdaptConfig(seconds=180.0, steps=3000),
                  "cuda": AdaptConfig(seconds=120.0, steps=3000, batch=32)}


@dataclass
class RunOptions:
    spacing: float | None = None  # output spacing along the slice axis (mm)
    factor: float | None = None  # or: slice spacing / output spacing
    thickness: float | None = None  # slice profile FWHM (mm); default DICOM or slice spacing
    device: str = "auto"
    adapt_steps: int | None = None
    adapt_seconds: float | None = None
    no_adapt: bool = False
    seed: int = 0
    force: bool = False
    weights: str | None = None  # weights file or folder; None: the shipped ones
    design: str = "inr"  # network design when starting from scratch
    method: str = "self-supervised"  # or "vae-pairs", "vae-combined" (see METHOD_NAMES)


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
    if name not in ("auto", "cuda", "cpu"):
        raise InputError(f"unknown device {name!r}: use auto, cuda or cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ResourceError("--device cuda was requested but no CUDA GPU is available to "
                            f"PyTorch {torch.__version__}; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


SEED_MAX = 2**32 - 1  # numpy and torch both accept 0 .. 2**32 - 1


def check_options(options: RunOptions) -> None:
    """Option values that no input can make valid: refused before any file is read."""
    def number(flag: str, value, low: float, above: bool, high: float | None = None) -> None:
        if value is None:
            return
        if not math.isfinite(value):
            raise InputError(f"{flag} must be a finite number (got {value})")
        text = f"{value:g}" if isinstance(value, float) else str(value)
        if value <= low if above else value < low:
            raise InputError(f"{flag} must be {'>' if above else '>='} {low:g} (got {text})")
        if high is not None and value > high:
            raise InputError(f"{flag} must be <= {high} (got {text})")

    number("--spacing", options.spacing, 0, True)
    number("--factor", options.factor, 1, False)
    number("--thickness", options.thickness, 0, True)
    number("--adapt-seconds", options.adapt_seconds, 0, False)
    number("--adapt-steps", options.adapt_steps, 0, False)
    number("--seed", options.seed, 0, False, SEED_MAX)


def plan_grid(volume: Volume, options: RunOptions) -> tuple[float, float]:
    """(output spacing, factor) along the slice axis, with the checks users need."""
    geometry = volume.geometry
    s = geometry.slice_spacing
    if options.spacing is not None and options.factor is not None:
        raise InputError("give --spacing or --factor, not both")
    if options.factor is not None:
        if not np.isfinite(options.factor) or options.factor < 1:
            raise InputError(f"--factor must be >= 1 (got {options.factor}); InterSliceSR only "
                             "makes slices thinner")
        spacing = s / options.factor
    elif options.spacing is not None:
        if not np.isfinite(options.spacing) or options.spacing <= 0:
            raise InputError(f"--spacing must be a positive number of mm (got {options.spacing})")
        if options.spacing > s * (1 + 1e-6):
            raise InputError(f"--spacing {options.spacing} mm is coarser than the slice spacing "
                             f"{s:.4g} mm (factor below 1); InterSliceSR only makes slices thinner")
        spacing = options.spacing
    else:
        if is_isotropic(geometry.spacing):
            raise InputError("input is already isotropic (spacing "
                             + " x ".join(f"{v:.4g}" for v in geometry.spacing)
                             + " mm); nothing to do (give --factor or --spacing to force "
                             "thinner slices)")
        spacing = min(geometry.inplane_spacings)
    factor = s / spacing
    if factor > 16:
        raise InputError(f"factor {factor:.3g} is beyond what the network supports (<= 16)")
    return spacing, factor


def grid_warnings(geometry: Geometry, spacing: float, options: RunOptions) -> list[str]:
    """Say so when the default (isotropic) request cannot give an isotropic output."""
    if options.spacing is not None or options.factor is not None:
        return []
    out = list(geometry.spacing)
    out[geometry.slice_axis] = spacing
    if is_isotropic(out):
        return []
    largest = max(geometry.spacing)
    thick = [a for a, v in enumerate(geometry.spacing) if v >= largest / ISOTROPY_TOLERANCE]
    why = (f"{len(thick)} axes are about equally thick ({largest:.4g} mm) and only one (the "
           "slice axis) is refined" if len(thick) > 1 else "the in-plane spacings differ")
    return ["the output is not isotropic (spacing " + " x ".join(f"{v:.4g}" for v in out)
            + f" mm): {why}; resample the other axes separately if you need isotropic voxels"]


def check_adaptable(volume: Volume, thickness: float) -> None:
    """Adaptation learns from in-plane axes; refuse up front when both are too short."""
    geometry = volume.geometry
    spacing3 = (geometry.slice_spacing, *geometry.inplane_spacings)
    if not inplane_samplers(volume.array, spacing3, thickness, np.arange(volume.array.shape[0])):
        _, rows, cols = volume.array.shape
        need = int(np.ceil(2 * geometry.slice_spacing / min(geometry.inplane_spacings)))
        raise InputError(f"the in-plane axes ({rows} x {cols} voxels) are too short to adapt "
                         f"to this volume (at least {need} voxels are needed at this slice "
                         "spacing); use --no-adapt or a larger field of view")


def check_memory(volume: Volume, m: int) -> None:
    """Refuse up front when the output arrays cannot fit (inference itself is chunked)."""
    _, rows, cols = volume.array.shape
    needed = 4 * rows * cols * (2 * m + volume.array.shape[0]) + 600 * 2**20
    available = psutil.virtual_memory().available
    if needed > available:
        raise ResourceError(f"the output needs about {needed / 2**30:.1f} GB of memory but only "
                            f"{available / 2**30:.1f} GB is available; choose a coarser "
                            "--spacing, crop the volume, or free memory")


def initial_model(options: RunOptions, log, adapting: bool = True) -> tuple[torch.nn.Module, str]:
    """The shipped (or given) pretrained network; an untrained one only when asked for by
    `--weights none`, never silently (a missing manifest is an error)."""
    if options.weights == "none":
        if not adapting:
            raise InputError("--weights none with no adaptation would output an untrained "
                             "network's guess; give an adaptation budget or drop --weights none")
        log("intersr: --weights none: starting from an untrained network "
            "(results need a longer adaptation)")
        torch.manual_seed(options.seed)
        return build_network(NetConfig(design=options.design)), ""
    pretrained = load_pretrained(options.weights)
    if pretrained is None:
        raise WeightsError(f"no shipped weights found ({models_dir() / MANIFEST} is missing); "
                           "reinstall the extension, give --weights PATH, or --weights none to "
                           "start from an untrained network on purpose")
    return pretrained.model, pretrained.sha256


def adapt_config(options: RunOptions, device: torch.device) -> AdaptConfig:
    base = DEFAULT_BUDGET[device.type]
    if options.adapt_steps is not None or options.adapt_seconds is not None:
        if options.adapt_steps is not None and options.adapt_steps < 0:
            raise InputError("--adapt-steps must be >= 0")
        if options.adapt_seconds is not None and options.adapt_seconds < 0:
            raise InputError("--adapt-seconds must be >= 0")
        return AdaptConfig(steps=options.adapt_steps, seconds=options.adapt_seconds,
                           batch=base.batch, seed=options.seed)
    return AdaptConfig(steps=base.steps, seconds=base.seconds, batch=base.batch,
                       seed=options.seed)


def super_resolve_volume(volume: Volume, options: RunOptions,
                         progress: Progress | None = None) -> RunResult:
    """The whole method on an in-memory canonical volume."""
    start = time.monotonic()
    progress = progress or Progress("none")
    check_options(options)
    if options.method not in METHOD_NAMES:
        raise InputError(f"unknown method {options.method!r}: use "
                         + ", ".join(METHOD_NAMES))
    device = pick_device(options.device)
    spacing, factor = plan_grid(volume, options)
    geometry = volume.geometry
    s = geometry.slice_spacing
    thickness = options.thickness if options.thickness is not None else (
        volume.slice_thickness or s)
    adapting = not (options.no_adapt or options.adapt_steps == 0 or options.adapt_seconds == 0)
    if adapting and options.method == "self-supervised":
        check_adaptable(volume, thickness)
    positions = output_positions(volume.array.shape[0], factor)
    check_memory(volume, len(positions))
    warnings = grid_warnings(geometry, spacing, options)
    for warning in warnings:
        progress.log(f"intersr: warning: {warning}")
    torch.manual_seed(options.seed)
    if device.type == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    intensity = normaliser(volume.array)
    normalised = intensity.apply(volume.array)
    model, sha = initial_model(options, progress.log, adapting)
    extra: dict[str, str] = {}
    if not adapting:
        result = AdaptResult()
    elif options.method == "self-supervised":
        spacing3 = (s, *geometry.inplane_spacings)
        result = adapt(model, normalised, spacing3, thickness, adapt_config(options, device),
                       device, progress)
    else:
        spacing3 = (s, *geometry.inplane_spacings)
        pairs = train_on_vae_pairs(model, normalised, spacing3, thickness, factor,
                                   adapt_config(options, device), device,
                                   combined=options.method == "vae-combined", progress=progress)
        result = pairs.adaptation
        extra = {"intersr_vae_steps": str(pairs.vae.steps),
                 "intersr_vae_final_l1": f"{pairs.vae.final_loss:.6g}",
                 "intersr_synthetic_slices": str(pairs.synthetic_shape[0])}
    output = super_resolve(model, normalised, positions, factor, thickness / s, device, progress)
    progress.update("check", 0, 1)
    consistency = data_consistency_db(normalised, output, factor, thickness / spacing)
    progress.update("check", 1, 1, data_consistency_db=consistency)
    low, high = float(volume.array.min()), float(volume.array.max())
    output = np.clip(intensity.invert(output), low, high)
    out_geometry = output_geometry(geometry, spacing)
    provenance = {
        "intersr_method": METHOD_NAMES[options.method],
        "intersr_version": __version__,
        "intersr_weights_sha256": sha or "none (--weights none: untrained start, adapted on this volume)",
        "intersr_factor": f"{factor:.6g}",
        "intersr_input_spacing_mm": f"{s:.6g}",
        "intersr_output_spacing_mm": f"{spacing:.6g}",
        "intersr_thickness_mm": f"{thickness:.6g}",
        "intersr_adapt_steps": str(result.steps),
        "intersr_adapt_final_loss": f"{result.final_loss:.6g}",
        "intersr_data_consistency_db": f"{consistency:.4g}",
        "intersr_note": "slices synthesised by InterSliceSR, not acquired",
        **extra,
    }
    if warnings:
        provenance["intersr_warnings"] = " | ".join(warnings)
    return RunResult(array=output.astype(np.float32), geometry=out_geometry, factor=factor,
                     thickness=thickness, adaptation=result, data_consistency_db=consistency,
                     weights_sha256=sha, seconds=time.monotonic() - start, provenance=provenance)


def run(input_path: str, output_path: str, options: RunOptions,
        progress: Progress | None = None) -> RunResult:
    """Read INPUT, super-resolve, write OUTPUT atomically (nothing is written on failure)."""
    progress = progress or Progress("none")
    start = time.monotonic()
    check_options(options)
    check_writable(output_path, input_path)
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
