"""Rigid (6-DOF) registration of each stack to the reference with SimpleITK.

Why upsample and blur first: a thick-slice stack is sharp in-plane and blurred through-plane,
and stacks of different orientations are blurred along different axes; comparing them raw
biases the alignment. Each stack is resampled onto a near-isotropic grid (its own frame) and
blurred in-plane to match its through-plane blur, so both images have about the same
isotropic resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .forward import FWHM_TO_SIGMA
from .stacks import Stack, corners, inside_fraction


class RegistrationError(RuntimeError):
    """Registration clearly failed (too little overlap or a poor final similarity)."""


@dataclass
class Registration:
    transform: sitk.Euler3DTransform  # reference physical point -> moving stack's space
    metric: float  # final metric value (correlation: -NCC, 1 is perfect -> -1)
    overlap: float  # fraction of the reference foreground that maps inside the moving stack
    seconds: float = 0.0


def smoothed_isotropic(stack: Stack, spacing: float = 2.0) -> sitk.Image:
    """The stack on a ~`spacing` mm isotropic grid of its own frame, equally blurred on all axes."""
    image = stack.image
    sigma = [0.0 if a == stack.slice_axis else stack.thickness * FWHM_TO_SIGMA for a in range(3)]
    blurred = sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-3) for s in sigma]) if max(
        sigma) > 0 else image
    size = [max(2, int(round(n * s / spacing))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    new_sp = [n * s / m for n, s, m in zip(image.GetSize(), image.GetSpacing(), size)]
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    edge = np.asarray(image.TransformContinuousIndexToPhysicalPoint([-0.5] * 3))
    origin = edge + d @ (np.asarray(new_sp) / 2)
    return sitk.Resample(blurred, size, sitk.Transform(), sitk.sitkBSpline, tuple(origin), new_sp,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def foreground(image: sitk.Image) -> sitk.Image:
    """Otsu foreground, dilated: where the anatomy is (background noise carries no motion)."""
    mask = sitk.OtsuThreshold(image, 0, 1)
    return sitk.BinaryDilate(mask, [2, 2, 2])


def register(reference: Stack, moving: Stack, *, metric: str = "correlation",
             use_mask: bool = True, spacing: float = 2.0, seed: int = 1,
             initial: sitk.Transform | None = None) -> Registration:
    """Rigid transform mapping reference points into `moving`'s physical space."""
    import time
    start = time.monotonic()
    fixed = smoothed_isotropic(reference, spacing)
    mov = smoothed_isotropic(moving, spacing)
    if inside_fraction(corners(moving.image).mean(0, keepdims=True), reference.image) == 0 and \
            _grid_overlap(reference.image, moving.image) == 0:
        raise RegistrationError(f"stack {moving.name} does not overlap the reference at all")
    reg = sitk.ImageRegistrationMethod()
    if metric == "correlation":
        reg.SetMetricAsCorrelation()
    elif metric == "mi":
        reg.SetMetricAsMattesMutualInformation(32)
    else:
        raise ValueError(f"metric must be 'correlation' or 'mi', got {metric!r}")
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentage(0.3, seed)
    if use_mask:
        reg.SetMetricFixedMask(foreground(fixed))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4,
                                                 numberOfIterations=200,
                                                 relaxationFactor=0.6,
                                                 gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    init = sitk.CenteredTransformInitializer(fixed, mov, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.GEOMETRY)
    if initial is not None:
        init = sitk.Euler3DTransform(initial)
    reg.SetInitialTransform(init, inPlace=False)
    out = reg.Execute(fixed, mov)
    final = sitk.Euler3DTransform(sitk.CompositeTransform(out).GetNthTransform(0)) \
        if out.GetName() == "CompositeTransform" else sitk.Euler3DTransform(out)
    value = float(reg.GetMetricValue())
    overlap = _mask_overlap(fixed, mov, final)
    if overlap < 0.2:
        raise RegistrationError(f"stack {moving.name}: only {overlap:.0%} of the reference "
                                "anatomy lies inside it after registration")
    if metric == "correlation" and value > -0.3:
        raise RegistrationError(f"stack {moving.name}: registration failed (normalised "
                                f"correlation {-value:.2f} after alignment, expected > 0.3)")
    return Registration(final, value, overlap, time.monotonic() - start)


def identity() -> sitk.Euler3DTransform:
    return sitk.Euler3DTransform()


def _grid_overlap(a: sitk.Image, b: sitk.Image) -> float:
    """Fraction of a coarse sample of `b`'s voxel centres inside `a` (identity transform)."""
    size = np.asarray(b.GetSize())
    axes = [np.linspace(0, n - 1, min(n, 12)) for n in size]
    idx = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    d = np.asarray(b.GetDirection()).reshape(3, 3)
    pts = np.asarray(b.GetOrigin()) + (idx * np.asarray(b.GetSpacing())) @ d.T
    return inside_fraction(pts, a)


def _mask_overlap(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform) -> float:
    """Fraction of the fixed foreground that maps inside the moving image."""
    mask = sitk.GetArrayViewFromImage(sitk.OtsuThreshold(fixed, 0, 1)) > 0
    zz, yy, xx = np.nonzero(mask)
    if len(zz) == 0:
        return 0.0
    step = max(1, len(zz) // 5000)
    idx = np.stack([xx[::step], yy[::step], zz[::step]], 1).astype(float)
    d = np.asarray(fixed.GetDirection()).reshape(3, 3)
    pts = np.asarray(fixed.GetOrigin()) + (idx * np.asarray(fixed.GetSpacing())) @ d.T
    a = np.asarray(transform.GetMatrix()).reshape(3, 3)
    c = np.asarray(transform.GetCenter())
    t = np.asarray(transform.GetTranslation())
    moved = (pts - c) @ a.T + c + t
    return inside_fraction(moved, moving)


def displacement_error(estimated: sitk.Transform, true: sitk.Transform,
                       points: np.ndarray) -> float:
    """Mean distance (mm) between where the two transforms send the given points."""
    e = np.asarray([estimated.TransformPoint(tuple(p)) for p in points])
    t = np.asarray([true.TransformPoint(tuple(p)) for p in points])
    return float(np.linalg.norm(e - t, axis=1).mean())
