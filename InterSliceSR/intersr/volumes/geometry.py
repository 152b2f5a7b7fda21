"""Geometry: the canonical (slices, rows, cols) array and the way back to physical space.

The engine works on a float32 array whose axis 0 is the slice axis (largest spacing).
`Geometry` remembers how to map that array back to the image's physical space, and
`output_geometry` implements the same-field-of-view convention of DESIGN.md with the one grid
rule (`volumes.grid`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import SimpleITK as sitk

from .grid import find_slice_axis, origin_shift, output_slice_count


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
    dicom: Any = None  # volumes.dicom.DicomSource when read from a DICOM series


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
