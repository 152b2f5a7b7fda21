"""`intersr fuse` as a function: read the stacks, register, super-resolve each, fuse, write.

The fusion's mathematics (stacks, registration, forward model, harmonisation, solver) live in
`methods/fusion/`; this runner adds what a run needs around them: file checks, the per-stack
network prior through the single-volume pipeline, progress, provenance, the atomic write.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import __version__, protocol
from ..errors import InputError
from ..methods.fusion.register import RegistrationError
from ..options import RunOptions, adapts, validate
from ..progress import Progress
from ..volumes.geometry import to_image
from ..volumes.read import read_image, to_volume
from ..volumes.write import check_writable, write_atomic
from .pipeline import super_resolve_volume

SERIES_UID, SERIES_DESCRIPTION = "0020|000e", "0008|103e"


@dataclass
class FuseSettings:
    """What only fusion has (the run options cover the rest)."""

    reference: int = 0  # the stack whose frame (direction, field of view) the output takes
    fov: str = "reference"  # or "union"
    register: bool = True  # False: trust the headers
    thicknesses: tuple = ()  # per stack, mm; None = the header's, else estimated


@dataclass
class FuseResult:
    image: sitk.Image
    provenance: dict[str, str]
    report: dict = field(default_factory=dict)
    seconds: float = 0.0


def describe_input(path: str, image: sitk.Image) -> str:
    """The file name, and for DICOM the series UID and description."""
    text = Path(path).name
    keys = image.GetMetaDataKeys()
    if SERIES_UID in keys:
        text += f" (SeriesInstanceUID {image.GetMetaData(SERIES_UID).strip()}"
        if SERIES_DESCRIPTION in keys:
            text += f", {image.GetMetaData(SERIES_DESCRIPTION).strip()}"
        text += ")"
    return text


def check_stack_count(n: int, settings: FuseSettings) -> None:
    if n < 2:
        raise InputError("fusion needs two or more stacks; for one stack use `intersr run`")
    if not 0 <= settings.reference < n:
        raise InputError(f"--reference {settings.reference}: there are {n} stacks "
                         f"(0 to {n - 1})")
    if settings.thicknesses and len(settings.thicknesses) != n:
        raise InputError(f"{len(settings.thicknesses)} thicknesses for {n} stacks")


def read_stacks(paths: list[str], settings: FuseSettings, force: bool
                ) -> tuple[list[sitk.Image], list[float | None], list[str]]:
    """Each stack read and checked like `intersr run`'s input; thickness from the header."""
    check_stack_count(len(paths), settings)
    images, thicknesses, names = [], [], []
    for k, path in enumerate(paths):
        image, header_thickness = read_image(path)
        to_volume(image, slice_thickness=header_thickness, force=force)  # the run's checks
        given = settings.thicknesses[k] if settings.thicknesses else None
        images.append(sitk.Cast(image, sitk.sitkFloat32))
        thicknesses.append(given or header_thickness)
        names.append(describe_input(path, image))
    return images, thicknesses, names


def fine_tunes(options: RunOptions) -> bool:
    """Fusion fine-tunes the network on each stack only when a budget is given: by default the
    stacks themselves constrain the volume and the shipped network is the prior (seconds per
    stack, where a default adaptation would take minutes per stack on a CPU)."""
    given = (options.budget, options.adapt_steps, options.adapt_seconds)
    return adapts(options) and any(value is not None for value in given)


def network_prior(options: RunOptions, weights: dict):
    """The single-stack super-resolution of one stack, as the fusion's learned prior: the
    shipped network (fine-tuned on the stack when the options give a budget). `weights`
    collects what ran, for the provenance."""
    def upsample(image: sitk.Image, thickness: float | None, profile: str
                 ) -> tuple[sitk.Image, str, float]:
        one = dataclasses.replace(options, spacing=None, factor=None, thickness=thickness,
                                  profile=profile, progress="none",
                                  no_adapt=not fine_tunes(options))
        validate(one)
        volume = to_volume(image, slice_thickness=thickness, force=True)
        result = super_resolve_volume(volume, one, Progress("none"))
        weights.update(sha256=result.weights_sha256, backend=result.backend,
                       steps=weights.get("steps", 0) + result.adaptation.steps)
        output = to_image(np.asarray(result.array, np.float32), result.geometry)
        return output, result.profile.shape, float(result.profile.fwhm)
    return upsample


# the fusion's own stage names -> the progress protocol's
STAGES = {"register": "register", "network": "prior", "operators": "fuse", "solve": "fuse"}


def fuse_images(images: list[sitk.Image], thicknesses: list[float | None], options: RunOptions,
                settings: FuseSettings, progress: Progress | None = None,
                names: list[str] | None = None) -> FuseResult:
    """Fuse in memory (the console API and the CLI both end here); nothing is written."""
    from ..methods.fusion.combine import fuse

    start = time.monotonic()
    progress = progress or Progress("none")
    validate(options)
    names = names or [f"stack {k}" for k in range(len(images))]
    ran: dict = {}

    def say(stage: str, done: int, total: int) -> None:
        progress.update(STAGES.get(stage, "fuse"), done, total)
    try:
        image, report = fuse(images, thicknesses, reference=settings.reference,
                             spacing=options.spacing, fov=settings.fov,
                             register=settings.register, profile=options.profile,
                             progress=say, upsample=network_prior(options, ran),
                             log=progress.log)
    except (ValueError, RegistrationError) as exc:  # the fusion's checks: overlap, geometry,
        raise InputError(str(exc)) from None        # a registration that clearly failed
    stacks = report["stacks"]
    provenance = protocol.provenance(
        note=protocol.FUSED_NOTE.format(n=len(images)),
        method="InterSliceSR fusion (rigid registration, each stack super-resolved by SliceINR"
        + (", fine-tuned on it" if fine_tunes(options) else ", no fine-tuning")
        + ", one volume consistent with every stack)",
        version=__version__, backend=ran.get("backend", ""),
        weights_sha256=ran.get("sha256") or "none",
        adapt_steps=str(ran.get("steps", 0)),
        output_spacing_mm=f"{report['grid']['spacing'][0]:.6g}",
        stacks=str(len(images)),
        inputs=" | ".join(names),
        stack_transforms=" | ".join(
            "reference" if k == settings.reference else
            "rotation_rad " + " ".join(f"{v:.5g}" for v in s["transform_parameters"][:3])
            + " translation_mm " + " ".join(f"{v:.4g}" for v in s["transform_parameters"][3:])
            for k, s in enumerate(stacks)),
        stack_profiles=" | ".join(f"{s['profile']} FWHM {s['thickness']:.4g} mm" for s in stacks),
        registration=" | ".join(
            "reference" if k == settings.reference else
            ("headers trusted" if s["registration_metric"] is None else
             f"correlation {-s['registration_metric']:.3f}, overlap {s['overlap']:.2f}")
            for k, s in enumerate(stacks)),
        **({"warnings": " | ".join(report["warnings"])} if report["warnings"] else {}),
    )
    return FuseResult(image, provenance, report, time.monotonic() - start)


def fuse_files(paths: list[str], output: str, options: RunOptions, settings: FuseSettings,
               progress: Progress | None = None) -> FuseResult:
    """Read STACKs, fuse, write OUTPUT atomically (nothing is written on failure or cancel)."""
    progress = progress or Progress("none")
    start = time.monotonic()
    validate(options)
    check_stack_count(len(paths), settings)
    for path in paths:
        check_writable(output, path)
    progress.update("load", 0, len(paths))
    images, thicknesses, names = read_stacks(paths, settings, options.force)
    progress.update("load", len(paths), len(paths))
    result = fuse_images(images, thicknesses, options, settings, progress, names)
    progress.update("write", 0, 1)
    write_atomic(result.image, output, result.provenance, compress=not options.uncompressed)
    progress.update("write", 1, 1)
    result.seconds = time.monotonic() - start
    return result


def describe(result: FuseResult) -> str:
    report = result.report
    moved = [s for s in report["stacks"] if s.get("registration_metric") is not None]
    return (f"fused {len(report['stacks'])} stacks onto {tuple(report['grid']['size'])} at "
            f"{report['grid']['spacing'][0]:.3g} mm; {len(moved)} registered; "
            f"{result.seconds:.1f} s")
