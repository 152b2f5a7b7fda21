"""Input stacks: one thick-slice series each, with what the forward model must know about it.

Why a dataclass: the slice axis, thickness and profile are decided once, checked once, and then
every other module (registration, forward model, harmonisation) reads them from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

PROFILE_SHAPES = ("gauss", "box", "sinc")
LABEL_MAP_MAX_VALUES = 64


@dataclass
class Stack:
    """A thick-slice series: a 3-D float32 image with its slice axis and slice profile."""

    image: sitk.Image
    thickness: float  # slice profile FWHM in mm
    profile: str = "gauss"
    name: str = ""
    slice_axis: int = field(init=False)

    def __post_init__(self) -> None:
        spacing = self.image.GetSpacing()
        largest = max(spacing)
        self.slice_axis = max(i for i, s in enumerate(spacing) if s >= largest * (1 - 1e-6))
        if self.profile not in PROFILE_SHAPES:
            raise ValueError(f"stack {self.name}: unknown profile {self.profile!r} "
                             f"(use one of {', '.join(PROFILE_SHAPES)})")
        if not np.isfinite(self.thickness) or self.thickness <= 0:
            raise ValueError(f"stack {self.name}: thickness must be > 0 mm, got {self.thickness}")

    @property
    def slice_spacing(self) -> float:
        return float(self.image.GetSpacing()[self.slice_axis])

    @property
    def inplane_spacing(self) -> float:
        return float(min(s for i, s in enumerate(self.image.GetSpacing())
                         if i != self.slice_axis))

    def array(self) -> np.ndarray:
        """Voxels in numpy (z, y, x) order, float32."""
        return sitk.GetArrayFromImage(self.image).astype(np.float32, copy=False)


def check_image(image: sitk.Image, name: str) -> sitk.Image:
    """Refuse what the fusion cannot use (4-D, vector, label map), as float32 otherwise."""
    if image.GetDimension() != 3:
        raise ValueError(f"stack {name} is a {image.GetDimension()}-D image; fusion needs 3-D "
                         "stacks (split a 4-D series into 3-D volumes first)")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"stack {name} is a vector image with "
                         f"{image.GetNumberOfComponentsPerPixel()} components per voxel; fusion "
                         "needs scalar (grayscale) stacks")
    if min(image.GetSize()) < 2:
        raise ValueError(f"stack {name} has size {image.GetSize()}: an axis has < 2 voxels")
    raw = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(raw.dtype, np.integer):
        values = np.unique(raw[:: max(1, raw.shape[0] // 8)])
        if values.size <= LABEL_MAP_MAX_VALUES and np.unique(raw).size <= LABEL_MAP_MAX_VALUES:
            raise ValueError(f"stack {name} looks like a label map (integer voxels with only "
                             f"{np.unique(raw).size} distinct values); fusion is for intensity "
                             "images")
    if not np.isfinite(raw).all():
        raise ValueError(f"stack {name} has non-finite voxels (NaN or infinity)")
    if float(raw.max()) == float(raw.min()):
        raise ValueError(f"stack {name} is constant")
    return sitk.Cast(image, sitk.sitkFloat32)


def make_stacks(images: list[sitk.Image], thicknesses: list[float | None],
                profile: str | list[str] = "gauss") -> list[Stack]:
    """Checked `Stack`s; a missing thickness defaults to the slice spacing."""
    if len(images) < 2:
        raise ValueError("fusion needs at least two stacks; for a single stack use "
                         "`intersr run INPUT OUTPUT` (single-stack super-resolution)")
    if len(thicknesses) != len(images):
        raise ValueError(f"{len(images)} stacks but {len(thicknesses)} thicknesses")
    profiles = [profile] * len(images) if isinstance(profile, str) else list(profile)
    stacks = []
    for i, (image, thick, shape) in enumerate(zip(images, thicknesses, profiles)):
        image = check_image(image, str(i))
        spacing = image.GetSpacing()
        t = float(thick) if thick is not None else float(max(spacing))
        stacks.append(Stack(image=image, thickness=t, profile=shape, name=str(i)))
    return stacks


def corners(image: sitk.Image) -> np.ndarray:
    """The 8 physical corners of an image's field of view (voxel edges), shape (8, 3)."""
    size = np.asarray(image.GetSize(), float)
    out = []
    for c in np.ndindex(2, 2, 2):
        idx = np.where(np.asarray(c) > 0, size - 0.5, -0.5)
        out.append(image.TransformContinuousIndexToPhysicalPoint(idx.tolist()))
    return np.asarray(out)


def inside_fraction(points: np.ndarray, image: sitk.Image) -> float:
    """Fraction of physical points that fall inside `image`'s field of view."""
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    idx = (points - np.asarray(image.GetOrigin())) @ d / np.asarray(image.GetSpacing())
    size = np.asarray(image.GetSize())
    ok = np.all((idx >= -0.5) & (idx <= size - 0.5), axis=1)
    return float(ok.mean()) if len(ok) else 0.0
