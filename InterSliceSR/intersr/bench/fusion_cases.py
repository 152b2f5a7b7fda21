"""Simulated multi-stack acquisitions from a near-isotropic volume (bench and tests).

Why independent of forward.py: the stacks are made with SimpleITK B-spline resampling and the
engine's `degrade`, so "A(truth) reproduces the stack" is a real check of the forward model.
Each stack's direction columns are permuted so its own third ITK axis is its slice axis, as a
scanner writes axial, coronal and sagittal series.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..acquisition.degrade import degrade
from ..methods.fusion.stacks import corners

# truth axes (x, y, z) -> the stack's ITK axes (in-plane 1, in-plane 2, slice)
ORIENTATIONS = {"axial": (0, 1, 2), "coronal": (0, 2, 1), "sagittal": (1, 2, 0)}


def load_truth(path: str, max_size=(160, 192, 160)) -> sitk.Image:
    """1 mm isotropic float32 volume, centre-cropped to at most `max_size` voxels."""
    image = sitk.ReadImage(path, sitk.sitkFloat32)
    sp = image.GetSpacing()
    if max(sp) / min(sp) > 1.3:
        raise ValueError(f"{path} is not near-isotropic (spacing {sp})")
    size = [int(round(n * s)) for n, s in zip(image.GetSize(), sp)]
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    edge = np.asarray(image.TransformContinuousIndexToPhysicalPoint([-0.5] * 3))
    origin = edge + d @ np.full(3, 0.5)
    image = sitk.Resample(image, size, sitk.Transform(), sitk.sitkBSpline, tuple(origin),
                          (1.0, 1.0, 1.0), image.GetDirection(), 0.0, sitk.sitkFloat32)
    image = sitk.Clamp(image, sitk.sitkFloat32, 0.0)
    crop_lo = [max(0, (n - m) // 2) for n, m in zip(size, max_size)]
    crop_hi = [max(0, n - m - lo) for n, m, lo in zip(size, max_size, crop_lo)]
    return sitk.Crop(image, crop_lo, crop_hi)


def random_motion(rng: np.random.Generator, centre, max_deg: float = 5.0,
                  max_mm: float = 4.0) -> sitk.Euler3DTransform:
    """A rigid motion with rotation norm <= max_deg and translation norm <= max_mm."""
    axis = rng.normal(size=3)
    angles = axis / np.linalg.norm(axis) * np.deg2rad(rng.uniform(0.5, 1.0) * max_deg)
    shift = rng.normal(size=3)
    shift = shift / np.linalg.norm(shift) * rng.uniform(0.5, 1.0) * max_mm
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(float(c) for c in centre))
    t.SetRotation(*[float(a) for a in angles])
    t.SetTranslation(tuple(float(s) for s in shift))
    return t


def stack_grid(truth: sitk.Image, orientation: str, slice_mm: float, inplane_mm: float = 1.0,
               fov_scale: float = 1.0) -> sitk.Image:
    """An empty stack image covering the truth's box (scaled about its centre)."""
    d_truth = np.asarray(truth.GetDirection()).reshape(3, 3)
    d = d_truth[:, list(ORIENTATIONS[orientation])]
    pts = corners(truth)
    centre = pts.mean(0)
    pts = centre + (pts - centre) * fov_scale
    local = (pts - centre) @ d
    low, high = local.min(0), local.max(0)
    spacing = np.array([inplane_mm, inplane_mm, slice_mm])
    size = np.floor((high - low) / spacing + 1e-6).astype(int)
    start = low + 0.5 * ((high - low) - size * spacing) + spacing / 2
    img = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(d.ravel()))
    img.SetOrigin(tuple(centre + d @ start))
    return img


def simulate_stack(truth: sitk.Image, orientation: str, factor: int, *, shape: str = "gauss",
                   thickness_ratio: float = 1.0, motion: sitk.Transform | None = None,
                   inplane_mm: float = 1.0, fov_scale: float = 1.0, noise: float = 0.0,
                   rng: np.random.Generator | None = None) -> tuple[sitk.Image, float]:
    """(stack image, thickness mm): slabs of `factor` mm, profile FWHM thickness_ratio*factor.

    `motion` maps reference points into this stack's space (as registration would find it);
    `noise` is the Rician sigma as a fraction of bright tissue (99th percentile).
    """
    grid = stack_grid(truth, orientation, float(factor), inplane_mm, fov_scale)
    size = list(grid.GetSize())
    size[2] *= factor
    d = np.asarray(grid.GetDirection()).reshape(3, 3)
    origin = np.asarray(grid.GetOrigin()) + d[:, 2] * (-factor / 2 + 0.5)
    inverse = motion.GetInverse() if motion is not None else sitk.Transform()
    fine = sitk.Resample(truth, size, inverse, sitk.sitkBSpline, tuple(origin),
                         (inplane_mm, inplane_mm, 1.0), grid.GetDirection(), 0.0,
                         sitk.sitkFloat32)
    arr = np.maximum(sitk.GetArrayFromImage(fine), 0)
    thick = degrade(arr, 0, float(factor), thickness_ratio * factor, shape)
    if noise > 0:
        rng = rng or np.random.default_rng(0)
        truth_arr = sitk.GetArrayViewFromImage(truth)
        sigma = noise * float(np.percentile(truth_arr[truth_arr > 0.1 * truth_arr.max()], 99))
        thick = np.sqrt((thick + rng.normal(0, sigma, thick.shape)) ** 2
                        + rng.normal(0, sigma, thick.shape) ** 2).astype(np.float32)
    out = sitk.GetImageFromArray(thick.astype(np.float32))
    out.CopyInformation(grid)
    return out, float(thickness_ratio * factor)
