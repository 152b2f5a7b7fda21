"""The bench's cases: thick-slice versions of real volumes made with the one degradation model,
the classical baselines (B-spline, Tikhonov deconvolution) and the volume lists (seen / held-out)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..acquisition.degrade import degrade, profile_matrix
from ..acquisition.metrics import normaliser
from ..options import BUDGET_PRESETS, DEFAULT_PRESET
from ..resources import HELD_OUT
from ..volumes.geometry import geometry_of, thick_slice_geometry
from ..volumes.grid import is_isotropic, plan

DEFAULT_DATA = Path("../shared/data/mr")


INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}


# Slices filled by interpolation in the source data (SOURCES.md): never scored.
FILLED_SLICES = {"brain_t1_memprage_fnndsc.nii.gz": (2, 114),  # (ITK axis, index)
                 "brain_t2fse_ax_fnndsc.nii.gz": (2, 34)}


def filled_in_crop(name: str, crop_start: tuple[int, int, int]) -> tuple:
    """The volume's filled slices as (ITK axis, index) within a crop starting at crop_start."""
    if name not in FILLED_SLICES:
        return ()
    axis, index = FILLED_SLICES[name]
    return ((axis, index - crop_start[axis]),)


@dataclass(frozen=True)
class Case:
    """A simulated acquisition: true profile, what the header claims, and what is asked for.

    fwhm, header and factor are in reference voxels; header None: the header states no
    thickness. target: output spacing in reference voxels (1: the reference grid; above 1:
    slices as acquired at that spacing, the reference made so with the same profile shape).
    voxel_mm relabels the reference's voxel size (a knee-like protocol with sub-mm pixels).
    thick_mm (and target_mm) state the case in mm for volumes of any pixel size (the sub-mm
    clinical series): fwhm and header are then fractions of thick_mm, and `in_voxels` turns
    the case into one volume's voxels.
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
    thick_mm: float | None = None
    target_mm: float | None = None

    def in_voxels(self, voxel_mm: float) -> "Case":
        """This case in reference voxels of `voxel_mm` (itself when stated in voxels)."""
        if self.thick_mm is None:
            return self
        factor = float(round(self.thick_mm / voxel_mm))
        target = float(max(1, round(self.target_mm / voxel_mm))) if self.target_mm else 1.0
        header = None if self.header is None else self.header * factor
        return replace(self, factor=factor, fwhm=self.fwhm * factor, header=header,
                       target=target, thick_mm=None, target_mm=None)


CASES = [
    Case("gauss_x4", "matched", 4, "gauss", 4.0, 4.0),
    Case("box_x4", "mismatch", 4, "box", 4.0, 4.0),
    Case("sinc_x4", "mismatch", 4, "sinc", 4.0, 4.0, tbw=4.0),
    Case("sinc8_thick20_x4", "mismatch", 4, "sinc", 4.8, 4.0, tbw=8.0),
    Case("gap_x4", "mismatch", 4, "box", 3.0, None),
    Case("sinc2_y_x4", "mismatch", 4, "sinc", 4.0, 4.0, tbw=2.0, axis=1),
    Case("knee_x9_to3", "knee", 9, "sinc", 9.0, 9.0, tbw=4.0, target=3.0, voxel_mm=0.4),
]


# Sub-millimetre clinical 2-D series (not near-isotropic, so not in CASES' volume list): one
# in-plane axis made 5 mm thick with a box or an RF-pulse profile, asked back at about 1.3 mm,
# scored against the in-plane truth made into slices at that spacing. Their own row ("submm").
SUBMM_VOLUMES = ("brain_t2fse_ax_fnndsc.nii.gz", "cardiac_lge3d_seg3d.nii.gz",
                 "cspine_t2star_ax_sct.nii.gz")
SUBMM_CASES = [
    Case("submm_box_5mm", "submm", 0, "box", 1.0, 1.0, axis=0, thick_mm=5.0, target_mm=1.3),
    Case("submm_sinc_5mm", "submm", 0, "sinc", 1.0, 1.0, tbw=4.0, axis=0, thick_mm=5.0,
         target_mm=1.3),
]
SUBMM_CROP = 256  # in-plane voxels: about 11-16 cm of anatomy, 22-32 thick slices


# The bench scores the default product: the CPU default preset's step budget (on a quiet 2-core
# CPU the steps, not the time cap, end a default run; a step count keeps the bench repeatable).
BENCH_ADAPT_STEPS = BUDGET_PRESETS[DEFAULT_PRESET]["cpu"].steps


BENCH_CROP = 128


BENCH_SEEDS = (0, 1, 2)


TIKHONOV_LAMBDAS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


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
