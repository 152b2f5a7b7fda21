"""Quality measures and the one intensity normalisation.

Normalisation maps the reference's 0.5th and 99.5th percentiles to 0 and 1, so it is invariant
to an intensity offset and scale (uint16 scans stored with +32768 or +65280, int16 with +32500,
floats x1000 all give the same normalised volume). For the usual MR volume with a dark
background the 0.5th percentile is 0 and this is DESIGN.md's "divide by the 99.5th
percentile". Measures: clip to [0, 1], PSNR and 3-D SSIM (Gaussian window, sigma 1.5) over
foreground and whole crop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .degrade import DEFAULT_TBW, degrade

LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


@dataclass(frozen=True)
class Intensity:
    """An affine intensity map: `apply` sends `low` to 0 and `high` to 1; `invert` undoes it."""

    low: float
    high: float

    @property
    def span(self) -> float:
        return self.high - self.low

    def apply(self, array: np.ndarray) -> np.ndarray:
        return ((np.asarray(array, np.float64) - self.low) / self.span).astype(np.float32)

    def invert(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array, np.float64) * self.span + self.low


def normaliser(reference: np.ndarray) -> Intensity:
    """Robust range of `reference`: percentiles at both ends (min/max when they coincide)."""
    low, high = (float(v) for v in np.percentile(reference, (LOW_PERCENTILE, HIGH_PERCENTILE)))
    if not high > low:
        low, high = float(np.min(reference)), float(np.max(reference))
    if not high > low:
        high = low + 1.0  # a constant array: any unit works
    return Intensity(low, high)


def normalise(array: np.ndarray, intensity: Intensity) -> np.ndarray:
    return np.clip(intensity.apply(array), 0.0, 1.0)


def foreground_mask(reference_norm: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Voxels of anatomy: above 10% of the robust maximum, holes filled, slightly dilated."""
    mask = ndimage.gaussian_filter(reference_norm, 1.0) > threshold
    mask = ndimage.binary_closing(mask, iterations=2)
    return ndimage.binary_dilation(mask, iterations=1)


def psnr(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None) -> float:
    diff = (reference - estimate) ** 2
    mse = float(diff[mask].mean() if mask is not None else diff.mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def ssim_map(reference: np.ndarray, estimate: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    c1, c2 = 0.01**2, 0.03**2
    x, y = reference.astype(np.float64), estimate.astype(np.float64)
    blur = lambda a: ndimage.gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def quality(reference: np.ndarray, estimate: np.ndarray, exclude_slices: tuple = ()) -> dict:
    """PSNR/SSIM (foreground and whole crop) after the DESIGN.md normalisation."""
    intensity = normaliser(reference)
    ref, est = normalise(reference, intensity), normalise(estimate, intensity)
    keep = np.ones(ref.shape, bool)
    for axis, index in exclude_slices:
        np.moveaxis(keep, axis, 0)[index] = False
    fg = foreground_mask(ref) & keep
    smap = ssim_map(ref, est)
    return {"psnr_fg": psnr(ref, est, fg), "psnr_all": psnr(ref, est, keep),
            "ssim_fg": float(smap[fg].mean()), "ssim_all": float(smap[keep].mean())}


def data_consistency_db(thick: np.ndarray, output: np.ndarray, factor: float, fwhm: float,
                        shape: str = "gauss", tbw: float = DEFAULT_TBW) -> float:
    """Degrade the output again onto the input's slabs (axis 0) and compare with the input.

    A self-consistency check, not a quality metric (a deconvolution scores high with worse
    images). factor and fwhm are in output voxels. Needs no reference: works on real scans.
    """
    again = degrade(output, 0, factor, fwhm, shape, tbw)
    n = min(len(again), len(thick))
    intensity = normaliser(thick)
    return psnr(normalise(thick[:n], intensity), normalise(again[:n], intensity))
