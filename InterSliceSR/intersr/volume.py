"""I/O and geometry: the one place that knows about files, axes and physical space.

The engine works on a canonical float32 array shaped (slices, rows, cols), where axis 0 is
the slice axis (largest spacing). `Geometry` remembers how to map that array back to the
image's physical space, and `output_geometry` implements the same-field-of-view convention
of DESIGN.md with the one grid rule (`intersr.grid`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .grid import (ISOTROPY_TOLERANCE, find_slice_axis, is_isotropic,  # noqa: F401 (re-exported)
                   origin_shift, output_positions, output_slice_count)

WRITABLE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")  # single-file formats: atomic rename
DICOM_SLICE_THICKNESS = "0018|0050"


@dataclass(frozen=True)
class Geometry:
    """Physical geometry of a 3-D image in ITK order (x, y, z index axes)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # row-major 3x3
    slice_axis: int  # ITK index axis with the largest spacing

    @property
    def slice_spacing(self) -> float:
        return self.spacing[self.slice_axis]

    @property
    def inplane_spacings(self) -> tuple[float, float]:
        """Spacings of canonical rows and cols (the two non-slice axes, numpy order)."""
        rows_axis, cols_axis = _inplane_itk_axes(self.slice_axis)
        return self.spacing[rows_axis], self.spacing[cols_axis]

    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)


@dataclass
class Volume:
    """A canonical (slices, rows, cols) float32 array with its geometry and source facts."""

    array: np.ndarray
    geometry: Geometry
    pixel_id: int
    slice_thickness: float | None = None  # from DICOM SliceThickness when known
    source: str = ""


def _inplane_itk_axes(slice_axis: int) -> tuple[int, int]:
    """ITK axes that become canonical rows and cols (numpy order: higher ITK axis first)."""
    others = [a for a in (2, 1, 0) if a != slice_axis]
    return others[0], others[1]


def _numpy_order(slice_axis: int) -> tuple[int, int, int]:
    """Permutation from SimpleITK's numpy array (z, y, x) to canonical (slice, rows, cols)."""
    rows_axis, cols_axis = _inplane_itk_axes(slice_axis)
    return (2 - slice_axis, 2 - rows_axis, 2 - cols_axis)


def geometry_of(image: sitk.Image, slice_axis: int | None = None) -> Geometry:
    spacing = tuple(float(s) for s in image.GetSpacing())
    return Geometry(
        size=tuple(int(n) for n in image.GetSize()),
        spacing=spacing,
        origin=tuple(float(o) for o in image.GetOrigin()),
        direction=tuple(float(d) for d in image.GetDirection()),
        slice_axis=find_slice_axis(spacing) if slice_axis is None else slice_axis,
    )


def read_image(path: str | os.PathLike) -> tuple[sitk.Image, float | None]:
    """Read a file or a DICOM series folder; also return DICOM SliceThickness when present."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InputError(f"no DICOM series found in folder {path}")
            files = reader.GetGDCMSeriesFileNames(str(path), series[0])
            reader.SetFileNames(files)
            reader.MetaDataDictionaryArrayUpdateOn()
            image = reader.Execute()
            thickness = None
            if reader.HasMetaDataKey(0, DICOM_SLICE_THICKNESS):
                try:
                    thickness = float(reader.GetMetaData(0, DICOM_SLICE_THICKNESS).strip())
                except ValueError:
                    thickness = None
            return image, thickness
        image = sitk.ReadImage(str(path))
    except InputError:
        raise
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputError(f"cannot read {path}: {first_line}") from None
    thickness = None
    if image.HasMetaDataKey(DICOM_SLICE_THICKNESS):
        try:
            thickness = float(image.GetMetaData(DICOM_SLICE_THICKNESS).strip())
        except ValueError:
            thickness = None
    return image, thickness


def validate_image(image: sitk.Image) -> None:
    """Refuse what the engine cannot honestly process, with a message that says why."""
    dim = image.GetDimension()
    if dim == 2:
        raise InputError("input is a 2-D image; InterSliceSR needs a 3-D volume (a stack of slices)")
    if dim != 3:
        raise InputError(f"input is a {dim}-D image; InterSliceSR needs a single 3-D volume "
                         "(split 4-D series into 3-D volumes first)")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"input is a vector image with {image.GetNumberOfComponentsPerPixel()} "
                         "components per voxel; InterSliceSR needs a scalar (grayscale) volume")
    if min(image.GetSize()) < 2:
        raise InputError(f"input size {image.GetSize()} has an axis with fewer than 2 voxels")
    if min(image.GetSpacing()) <= 0:
        raise InputError(f"input spacing {image.GetSpacing()} is not positive")
    if "complex" in image.GetPixelIDTypeAsString():
        raise InputError("input has complex voxels; give the magnitude image")


def to_volume(image: sitk.Image, *, slice_thickness: float | None = None, force: bool = False,
              slice_axis: int | None = None, source: str = "") -> Volume:
    """Validate and convert a SimpleITK image into the canonical Volume."""
    validate_image(image)
    geometry = geometry_of(image, slice_axis)
    raw = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(raw.dtype, np.floating) and not np.isfinite(raw).all():
        bad = int(np.size(raw) - np.count_nonzero(np.isfinite(raw)))
        raise InputError(f"input has {bad} non-finite voxels (NaN or infinity); "
                         "fix or mask them before super-resolution")
    if np.issubdtype(raw.dtype, np.integer) and not force:
        sample = raw.ravel()[:: max(1, raw.size // 2_000_000)]
        distinct = np.unique(sample).size
        if distinct <= 64:
            raise InputError(f"input looks like a label map (integer voxels with only {distinct} "
                             "distinct values); super-resolution is for intensity images "
                             "(use --force to process it anyway)")
    # a copy, always: `raw` is a view into the image's buffer, which may be freed after return
    array = np.array(np.transpose(raw, _numpy_order(geometry.slice_axis)), np.float32, order="C")
    return Volume(array=array, geometry=geometry, pixel_id=image.GetPixelID(),
                  slice_thickness=slice_thickness, source=source)


def load_volume(path: str | os.PathLike, *, force: bool = False) -> Volume:
    image, thickness = read_image(path)
    return to_volume(image, slice_thickness=thickness, force=force, source=str(path))


def output_geometry(geometry: Geometry, new_spacing: float) -> Geometry:
    """Same field of view, new spacing along the slice axis; direction kept exactly."""
    axis = geometry.slice_axis
    s = geometry.slice_spacing
    factor = s / new_spacing
    size = list(geometry.size)
    size[axis] = output_slice_count(size[axis], factor)
    spacing = list(geometry.spacing)
    spacing[axis] = new_spacing
    origin = np.asarray(geometry.origin) + (geometry.direction_matrix()[:, axis]
                                            * origin_shift(s, new_spacing))
    return replace(geometry, size=tuple(size), spacing=tuple(spacing),
                   origin=tuple(float(o) for o in origin))


def thick_slice_geometry(geometry: Geometry, axis: int, factor: float) -> Geometry:
    """Geometry of thick slabs of k voxels made from `geometry` along `axis` (same FOV start).

    The inverse of `output_geometry`: used to build simulated thick-slice cases.
    """
    h = geometry.spacing[axis]
    size = list(geometry.size)
    size[axis] = int(np.floor(size[axis] / factor + 1e-6))
    spacing = list(geometry.spacing)
    spacing[axis] = h * factor
    shift = -h / 2 + h * factor / 2
    origin = np.asarray(geometry.origin) + geometry.direction_matrix()[:, axis] * shift
    return replace(geometry, size=tuple(size), spacing=tuple(spacing),
                   origin=tuple(float(o) for o in origin), slice_axis=axis)


def to_image(array: np.ndarray, geometry: Geometry, pixel_id: int | None = None) -> sitk.Image:
    """Canonical (slices, rows, cols) array -> SimpleITK image with `geometry`."""
    order = _numpy_order(geometry.slice_axis)
    inverse = np.argsort(order)
    raw = np.transpose(array, inverse)
    expected = tuple(reversed(geometry.size))
    if raw.shape != expected:
        raise ValueError(f"array shape {raw.shape} does not match geometry size {expected}")
    if pixel_id is not None and pixel_id != sitk.sitkFloat32:
        raw = _cast_like(raw, pixel_id)
    image = sitk.GetImageFromArray(np.ascontiguousarray(raw))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def _cast_like(raw: np.ndarray, pixel_id: int) -> np.ndarray:
    probe = sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], pixel_id))
    dtype = probe.dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(raw), info.min, info.max).astype(dtype)
    return raw.astype(dtype)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before any heavy work, when OUTPUT cannot be written."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(WRITABLE_SUFFIXES):
        raise InputError(f"output {path} has an unsupported extension; use one of "
                         + ", ".join(WRITABLE_SUFFIXES))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"output folder is not writable: {folder}")
    if path.is_dir():
        raise InputError(f"output {path} is a folder, not a file name")
    return path


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(WRITABLE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return path.name[-len(suffix):]
    return path.suffix


def write_atomic(image: sitk.Image, path: str | os.PathLike, provenance: dict[str, str]) -> Path:
    """Write to a temporary name in the same folder, then rename: never a half-written OUTPUT."""
    path = check_writable(path)
    for key, value in provenance.items():
        image.SetMetaData(key, str(value))
    description = "; ".join(f"{k.removeprefix('intersr_')}={v}" for k, v in provenance.items())
    image.SetMetaData("ITK_FileNotes", description[:79])  # NIfTI descrip holds 80 bytes
    suffix = _suffix(path)
    temp = path.with_name(f".{path.name[: -len(suffix)]}.partial-{os.getpid()}{suffix}")
    try:
        sitk.WriteImage(image, str(temp), useCompression=True)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path

