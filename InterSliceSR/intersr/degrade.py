"""The degradation model: a Gaussian slice profile with FWHM = slice thickness.

One implementation for every training pair, the benchmark's thick-slice cases and the
data-consistency check. Each high-resolution voxel is a box of width 1, so the weight of
voxel j for slab i is the Gaussian's integral over [j - 1/2, j + 1/2]; this stays exact for
thin profiles (FWHM below one voxel) and for non-integer factors.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import ndtr

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def slab_count(n_fine: int, factor: float) -> int:
    """Thick slabs that fit in n_fine voxels at factor k (same field-of-view start)."""
    return max(1, int(np.floor(n_fine / factor + 1e-6)))


@lru_cache(maxsize=64)
def _profile_matrix(n_fine: int, factor: float, fwhm: float) -> np.ndarray:
    n_slabs = slab_count(n_fine, factor)
    centres = (np.arange(n_slabs) + 0.5) * factor - 0.5
    sigma = max(fwhm * FWHM_TO_SIGMA, 1e-3)
    edges = np.arange(n_fine + 1, dtype=np.float64) - 0.5
    cdf = ndtr((edges[None, :] - centres[:, None]) / sigma)
    weights = np.diff(cdf, axis=1)
    weights /= weights.sum(axis=1, keepdims=True)
    weights[weights < 1e-7] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    weights.setflags(write=False)
    return weights


def profile_matrix(n_fine: int, factor: float, fwhm: float) -> np.ndarray:
    """(n_slabs, n_fine) matrix mapping fine voxels to thick slabs.

    factor: slab spacing / fine spacing (any real >= 1); fwhm: slab thickness in fine voxels.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    return _profile_matrix(int(n_fine), round(float(factor), 9), round(float(fwhm), 9))


def degrade(array: np.ndarray, axis: int, factor: float, fwhm: float) -> np.ndarray:
    """Thick slices of `array` along `axis`: Gaussian profile, spacing factor, same FOV start."""
    matrix = profile_matrix(array.shape[axis], factor, fwhm).astype(np.float32)
    moved = np.moveaxis(array.astype(np.float32, copy=False), axis, 0)
    out = np.tensordot(matrix, moved, axes=(1, 0))
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))
