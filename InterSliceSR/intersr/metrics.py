"""Quality measures, as DESIGN.md defines them: normalise by the reference's 99.5th percentile,
clip to [0, 1], PSNR and 3-D SSIM (Gaussian window, sigma 1.5) over foreground and whole crop.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .degrade import DEFAULT_TBW, degrade


def normaliser(reference: np.ndarray) -> float:
    scale = float(np.percentile(reference, 99.5))
    return scale if scale > 0 else float(np.max(np.abs(reference)) or 1.0)


def normalise(array: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(array.astype(np.float32) / scale, 0.0, 1.0)


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
    scale = normaliser(reference)
    ref, est = normalise(reference, scale), normalise(estimate, scale)
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
    scale = normaliser(thick)
    return psnr(normalise(thick[:n], scale), normalise(again[:n], scale))
