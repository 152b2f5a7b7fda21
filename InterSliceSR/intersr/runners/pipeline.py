"""`intersr run` as a function: read, check, adapt, super-resolve, verify, write.

`super_resolve_volume` works on an in-memory `Volume` (the benchmark calls it directly);
`run` adds the file handling and the progress protocol around it. This module imports no
torch: adaptation and the torch backend live in `methods.dispatch`, imported only when a run needs
them, so `--no-adapt` runs on ONNX Runtime alone where torch is not installed.
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from .. import __version__, protocol
from ..acquisition.metrics import data_consistency_db, normaliser
from ..acquisition.profile import choose_profiles
from ..errors import InputError
from ..methods import METHODS
from ..methods.results import AdaptResult, RunResult
from ..networks import backends
from ..networks.backends import Backend
from ..networks.infer import super_resolve
from ..options import RunOptions, adapts, engine_args, ort_threads, replace, validate
from ..progress import Progress
from ..volumes import dicom_write
from ..volumes.geometry import Geometry, Volume, output_geometry, to_image
from ..volumes.grid import ISOTROPY_TOLERANCE, Grid, fine_inplane_axes, is_isotropic, plan
from ..volumes.read import input_sha256, load_volume
from ..volumes.write import check_writable, same_file, write_atomic
from . import memory

__all__ = ["RunOptions", "RunResult", "plan_grid", "check_memory", "super_resolve_volume", "run",
           "write_volume", "describe"]


def plan_grid(volume: Volume, options: RunOptions) -> Grid:
    """The output grid (the one rule in `intersr.grid`) with the checks users need."""
    g = volume.geometry
    return plan(g.size, g.spacing, target_spacing=options.spacing, factor=options.factor,
                slice_axis=g.slice_axis)


def check_memory(grid: Grid, backend: str = "torch", available: int | None = None,
                 confidence: bool = False) -> int:
    """Refuse up front when the run cannot fit (the estimate the Slicer module shows)."""
    return memory.check(grid, backend, available, confidence)


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
    inplane = geometry.inplane_spacings
    if len(fine_inplane_axes((geometry.slice_spacing, *inplane))) == 1:
        why += (f"; the {max(inplane):.4g} mm in-plane axis is itself thick, so only the "
                f"{min(inplane):.4g} mm one teaches the network")
    return ["the output is not isotropic (spacing " + " x ".join(f"{v:.4g}" for v in out)
            + f" mm): {why}; resample the other axes separately if you need isotropic voxels"]


def check_adaptable(volume: Volume, thickness: float) -> None:
    """Adaptation learns from in-plane axes; refuse up front when both are too short."""
    from ..methods.self_supervised import inplane_samplers  # torch: only runs that adapt get here
    geometry = volume.geometry
    spacing3 = (geometry.slice_spacing, *geometry.inplane_spacings)
    if not inplane_samplers(volume.array, spacing3, thickness, np.arange(volume.array.shape[0])):
        _, rows, cols = volume.array.shape
        need = int(np.ceil(2 * geometry.slice_spacing / min(geometry.inplane_spacings)))
        raise InputError(f"the in-plane axes ({rows} x {cols} voxels) are too short to adapt "
                         f"to this volume (at least {need} voxels are needed at this slice "
                         "spacing); use --no-adapt or a larger field of view")


def shipped_ort_backend(options: RunOptions) -> tuple[Backend, str]:
    """The shipped network's ONNX export on ONNX Runtime (sha256-verified)."""
    if options.weights is not None:
        raise InputError("--weights with ONNX Runtime only: a custom or from-scratch network "
                         "needs PyTorch (install torch, or leave out --weights)")
    return backends.shipped_ort(options.device, threads=ort_threads(options))


def super_resolve_volume(volume: Volume, options: RunOptions,
                         progress: Progress | None = None, confidence: bool = False,
                         keep_at: tuple[int, ...] = ()) -> RunResult:
    """The whole method on an in-memory canonical volume; `confidence`: the result also
    carries the confidence map (`methods.confidence`) and the two passes' spread.

    keep_at: for benches, the adaptation also keeps the weights that these shorter step
    budgets would have given (RunResult.adaptation.kept).
    """
    start = time.monotonic()
    progress = progress or Progress("none")
    validate(options)
    adapting = adapts(options)
    choice = backends.choose(options.backend, adapting)
    grid = plan_grid(volume, options)
    spacing, factor = grid.output_spacing_mm, grid.factor
    geometry = volume.geometry
    s = geometry.slice_spacing
    header_thickness = options.thickness if options.thickness is not None else (
        volume.slice_thickness or s)
    if options.weights == "none" and not adapting:
        raise InputError("--weights none with no adaptation would output an untrained "
                         "network's guess; give an adaptation budget or drop --weights none")
    if adapting and options.method == "self-supervised":
        check_adaptable(volume, header_thickness)
    positions = grid.positions()
    check_memory(grid, choice.backend, confidence=confidence)
    warnings = grid_warnings(geometry, spacing, options)
    for warning in warnings:
        progress.log(f"intersr: warning: {warning}")
    intensity = normaliser(volume.array)
    normalised = intensity.apply(volume.array)
    spacing3 = (s, *geometry.inplane_spacings)
    profiles, how = choose_profiles(normalised, spacing3, volume.slice_thickness,
                                    options.profile, options.thickness, progress)
    profile = profiles[0]
    thickness = profile.fwhm
    with tempfile.TemporaryDirectory(prefix="intersr-") as workdir:
        if choice.backend == "torch" or adapting or options.weights is not None:
            from ..methods.dispatch import adapted_backend
            engine, result, sha, extra = adapted_backend(
                options, normalised, spacing3, thickness, factor,
                use_ort=choice.backend == "onnxruntime", progress=progress, workdir=workdir,
                ort_on_cpu=choice.ort_on_cpu, profiles=profiles, target_spacing=spacing,
                keep_at=keep_at)
        else:
            engine, sha = shipped_ort_backend(options)
            result, extra = AdaptResult(), {}
        progress.log(f"intersr: inference with {engine.describe()} ({choice.reason})")
        output = super_resolve(engine, normalised, positions, factor, thickness / s,
                               progress=progress, spread=confidence)
        output, spread = output if confidence else (output, None)
        backend_text = describe_backend(engine.name, adapting) + f" on {engine.device}"
        del engine
    progress.update("check", 0, 1)
    consistency = data_consistency_db(normalised, output, factor, thickness / spacing,
                                      profile.shape, profile.tbw)
    conf_map = None
    if confidence:
        from ..methods.confidence import confidence_map
        conf_map = confidence_map(normalised, output, spread, positions)
    progress.update("check", 1, 1, data_consistency_db=consistency)
    low, high = float(volume.array.min()), float(volume.array.max())
    output *= np.float32(intensity.span)  # in place: the output is the largest array of a run
    output += np.float32(intensity.low)
    np.clip(output, low, high, out=output)
    provenance = protocol.provenance(
        method=METHODS[options.method][1] if adapting
        else "InterSliceSR (SliceINR, pretrained network, no fine-tuning)",
        version=__version__,
        backend=backend_text,
        weights_sha256=sha or "none (trained from scratch on this volume)",
        profile=f"{profile.describe()} ({how}); adapted to: "
        + "; ".join(p.describe() for p in profiles),
        factor=f"{factor:.6g}",
        input_spacing_mm=f"{s:.6g}",
        output_spacing_mm=f"{spacing:.6g}",
        thickness_mm=f"{thickness:.6g}",
        adapt_steps=str(result.steps),
        adapt_final_loss=f"{result.final_loss:.6g}",
        data_consistency_db=f"{consistency:.4g}",
        slice_axis="xyz"[geometry.slice_axis],
        **extra,
        **({"warnings": " | ".join(warnings)} if warnings else {}),
    )
    return RunResult(array=output, geometry=output_geometry(geometry, spacing), factor=factor,
                     thickness=thickness, adaptation=result, data_consistency_db=consistency,
                     weights_sha256=sha, seconds=time.monotonic() - start,
                     backend=backend_text, provenance=provenance, profile=profile,
                     confidence=conf_map, spread=spread)


def describe_backend(name: str, adapting: bool) -> str:
    """The provenance's backend field, e.g. "onnxruntime 1.31.1 (no fine-tuning)"."""
    import importlib.metadata
    version = ""
    for dist in ((name,) if name == "torch" else ("onnxruntime", "onnxruntime-gpu")):
        try:
            version = importlib.metadata.version(dist)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"{name} {version}".strip() + ("" if adapting else " (pretrained network, no "
                                          "fine-tuning)")


def run(input_path: str, output_path: str, options: RunOptions,
        progress: Progress | None = None) -> RunResult:
    """Read INPUT, super-resolve, write OUTPUT atomically (nothing is written on failure).

    OUTPUT is a file, or a new DICOM series folder (`dicom_write.wants_dicom`)."""
    progress = progress or Progress("none")
    start = time.monotonic()
    validate(options)
    as_dicom = dicom_write.wants_dicom(output_path, options.output_format)
    if as_dicom:
        dicom_write.check_dicom_folder(output_path, input_path)
    else:
        check_writable(output_path, input_path)
    if options.confidence is not None:
        check_confidence_path(options.confidence, input_path, output_path)
    progress.update("load", 0, 1)
    volume = load_volume(input_path, force=options.force)
    if volume.dicom is not None:
        # The scanner's SliceThickness is the profile's FWHM, as if given with --thickness (the
        # Slicer module passes it so for a node loaded from DICOM): the same result either way.
        if options.thickness is not None:
            how = f"; --thickness {options.thickness:g} mm given, used instead"
        elif volume.slice_thickness is not None:
            how = "; used as the slice profile's FWHM (as --thickness)"
            options = replace(options, thickness=volume.slice_thickness)
        else:
            how = ""
        progress.log("intersr: " + volume.dicom.describe(volume.geometry.slice_spacing) + how)
    progress.update("load", 1, 1)
    result = super_resolve_volume(volume, options, progress,
                                  confidence=options.confidence is not None)
    result.spread = None  # only the map is written
    # what made this output, so that `intersr batch --resume` can tell whether it is current
    result.provenance = protocol.provenance(
        **{protocol.short_key(k): v for k, v in result.provenance.items()},
        input_sha256=input_sha256(input_path), options=run_options_text(options))
    progress.update("write", 0, 1)
    if as_dicom:
        write_dicom(result, output_path, volume, progress)
    else:
        write_volume(result, output_path, like=volume, compress=not options.uncompressed)
    if options.confidence is not None:
        try:
            write_confidence(result, options.confidence, compress=not options.uncompressed)
        except BaseException:
            remove_output(output_path, as_dicom)  # a failed run leaves nothing behind
            raise
    progress.update("write", 1, 1)
    result.seconds = time.monotonic() - start
    return result


def run_options_text(options: RunOptions) -> str:
    """The options that shape an output, as `intersr run` flags ("defaults" when none)."""
    return " ".join(engine_args(options)) or "defaults"


def write_volume(result: RunResult, output_path: str, like: Volume | None = None,
                 compress: bool = True) -> None:
    """Write a result atomically with its provenance, in the pixel type of `like` (the input)."""
    image = to_image(result.array, result.geometry, like.pixel_id if like else None)
    write_atomic(image, output_path, result.provenance, compress=compress)


def check_confidence_path(path: str, input_path: str, output_path: str) -> None:
    """--confidence must name a new file, never OUTPUT or INPUT (refused before any work)."""
    for other, what in ((output_path, "OUTPUT"), (input_path, "INPUT")):
        if same_file(path, other):
            raise InputError(f"--confidence {path} is {what}; give the confidence map its own "
                             "file name (it is never written over the result or the input)")
    check_writable(path, input_path)


def confidence_provenance(result: RunResult) -> dict[str, str]:
    """The result's provenance plus what the map is and its unit."""
    from ..methods.confidence import describe, load_calibration
    return protocol.provenance(**{protocol.short_key(k): v for k, v in result.provenance.items()},
                               map=describe(load_calibration()))


def write_confidence(result: RunResult, path: str, compress: bool = True) -> None:
    """The confidence map (float32, the result's grid) atomically, with its provenance."""
    image = to_image(result.confidence, result.geometry)
    write_atomic(image, path, confidence_provenance(result), compress=compress)


def remove_output(path: str, as_dicom: bool) -> None:
    if as_dicom:
        import shutil
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def write_dicom(result: RunResult, folder: str, like: Volume, progress: Progress) -> None:
    """The result as a DERIVED\\SECONDARY DICOM series (volumes/dicom_write.py)."""
    source = like.dicom
    if source is None:
        warning = ("the input is not DICOM: the DICOM output's patient and study tags are empty "
                   "(a new StudyInstanceUID); add them before the series goes to a PACS")
        progress.log(f"intersr: warning: {warning}")
        key = protocol.PROVENANCE_PREFIX + "warnings"
        result.provenance[key] = " | ".join(filter(None, (result.provenance.get(key), warning)))
    image = to_image(result.array, result.geometry, like.pixel_id)
    dicom_write.write_dicom_series(
        image, folder, result.provenance, source_files=source.files if source else (),
        source_description=source.series_description if source else "",
        fallback_description=_stem(like.source), version=__version__)


def _stem(path: str) -> str:
    name = os.path.basename(os.path.normpath(path)) if path else ""
    for suffix in (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def describe(result: RunResult) -> str:
    return (f"factor {result.factor:.3g}, thickness {result.thickness:.3g} mm, "
            f"{result.adaptation.steps} adaptation steps (held-out L1 "
            f"{result.adaptation.initial_loss:.4f} -> {result.adaptation.final_loss:.4f}), "
            f"data consistency {result.data_consistency_db:.2f} dB, {result.backend}")
