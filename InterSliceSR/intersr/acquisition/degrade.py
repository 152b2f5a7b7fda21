"""The degradation model: a slice profile of a given shape and FWHM, integrated over voxels.

One implementation for every training pair, the benchmark's thick-slice cases and the
data-consistency check. Three shapes, each parameterised by its FWHM:
- "gauss": the smooth textbook profile;
- "box": an ideal flat slab (hard edges);
- "sinc": the small-tip slice profile of a Hamming-windowed sinc RF pulse with time-bandwidth
  product `tbw` (2-8): a flat top, smooth edges and small ripples, as a 2-D multi-slice
  acquisition excites it. By the small-tip approximation the profile is the Fourier transform
  of the RF envelope.
Each high-resolution voxel is a box of width 1, so the weight of voxel j for slab i is the
profile's integral over [j - 1/2, j + 1/2]; this stays exact for thin profiles (FWHM below one
voxel), for non-integer factors, and for gaps (FWHM < factor) or overlaps (FWHM > factor).

Thick slices show a profile's width, hardly its shape: a box of width w and a Gaussian of FWHM
~0.7 w make nearly the same slices (scripts/profile_identifiability.py). What they share is the
frequency at which the profile's transfer function falls to one half, so that is the width
compared across shapes (`SliceProfile.effective_width`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import ndtr

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
SHAPES = ("gauss", "box", "sinc")
DEFAULT_TBW = 4.0
_SINC_SUPPORT = 3.0  # the RF profile is tabulated over +-3 FWHM (ripples beyond are < 0.5 %)
_GAUSS_HALF = np.sqrt(np.log(2.0) / 2.0) / (np.pi * FWHM_TO_SIGMA)  # Gaussian: f50 x FWHM


@dataclass(frozen=True)
class SliceProfile:
    """A slice profile: shape, FWHM in mm, and the RF pulse's time-bandwidth product (sinc)."""

    shape: str = "gauss"
    fwhm: float = 1.0
    tbw: float = DEFAULT_TBW

    def describe(self) -> str:
        extra = f" TBW {self.tbw:g}" if self.shape == "sinc" else ""
        return f"{self.shape}{extra}, FWHM {self.fwhm:.3g} mm"

    @property
    def effective_width(self) -> float:
        """The FWHM of the Gaussian whose transfer function falls to one half at the same
        frequency as this profile's (mm; a Gaussian's own FWHM, a box's 0.731 x its width).

        A width that does not depend on the shape named: the profiles another shape fitted to
        the same thick slices (docs/results/profile_identifiability.json) agree in it within
        7 % (in FWHM up to 32 %, in RMS width 14 %, in area / peak 27 %)."""
        return float(self.fwhm * _GAUSS_HALF / _half_frequency(self.shape, round(self.tbw, 6)))


def check_shape(shape: str, tbw: float = DEFAULT_TBW) -> None:
    if shape not in SHAPES:
        raise ValueError(f"unknown slice profile shape {shape!r}: use one of {', '.join(SHAPES)}")
    if shape == "sinc" and not 1.0 <= tbw <= 16.0:
        raise ValueError(f"time-bandwidth product must be in [1, 16], got {tbw}")


@lru_cache(maxsize=32)
def _sinc_cdf(tbw: float) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative RF slice profile on a grid in FWHM units (u = x / FWHM), normalised to 1."""
    t = np.linspace(-0.5, 0.5, 1025)  # pulse time, duration 1
    pulse = np.sinc(tbw * t) * (0.54 + 0.46 * np.cos(2 * np.pi * t))
    f = np.linspace(-_SINC_SUPPORT, _SINC_SUPPORT, 6001) * tbw  # in units where FWHM ~ tbw
    profile = (pulse[None, :] * np.cos(2 * np.pi * f[:, None] * t[None, :])).sum(axis=1)
    profile /= profile.max()
    above = f[profile >= 0.5]
    fwhm = above.max() - above.min()
    u = f / fwhm  # rescale so that the FWHM is exactly 1
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (profile[1:] + profile[:-1]) * np.diff(u))])
    return u, cdf / cdf[-1]


def profile_cdf(x: np.ndarray, shape: str, fwhm: float, tbw: float = DEFAULT_TBW) -> np.ndarray:
    """Integral of the unit-area profile centred at 0 from -inf to x (x, fwhm in the same units)."""
    fwhm = max(float(fwhm), 1e-3)
    if shape == "gauss":
        return ndtr(x / (fwhm * FWHM_TO_SIGMA))
    if shape == "box":
        return np.clip(x / fwhm + 0.5, 0.0, 1.0)
    u, cdf = _sinc_cdf(round(float(tbw), 6))
    return np.interp(x / fwhm, u, cdf, left=0.0, right=1.0)


@lru_cache(maxsize=32)
def _half_frequency(shape: str, tbw: float) -> float:
    """Where the transfer function of the unit-FWHM profile first falls to 0.5 (cycles per FWHM)."""
    edges = np.linspace(-_SINC_SUPPORT - 1, _SINC_SUPPORT + 1, 16001)
    weights = np.diff(profile_cdf(edges, shape, 1.0, tbw))
    x = 0.5 * (edges[1:] + edges[:-1])

    def transfer(f: float) -> float:
        return float(weights @ np.cos(2 * np.pi * f * x)) - 0.5

    lo, hi = 0.0, 0.25
    while transfer(hi) > 0:
        lo, hi = hi, hi * 2
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if transfer(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def profile_values(x: np.ndarray, shape: str, fwhm: float, tbw: float = DEFAULT_TBW) -> np.ndarray:
    """Profile samples normalised to a peak of 1 (for plots and tests)."""
    h = 1e-3 * max(fwhm, 1e-3)
    slope = (profile_cdf(x + h, shape, fwhm, tbw) - profile_cdf(x - h, shape, fwhm, tbw)) / (2 * h)
    peak = (profile_cdf(np.array([h]), shape, fwhm, tbw)
            - profile_cdf(np.array([-h]), shape, fwhm, tbw))[0] / (2 * h)
    return slope / peak


def slab_count(n_fine: int, factor: float) -> int:
    """Thick slabs that fit in n_fine voxels at factor k (same field-of-view start)."""
    return max(1, int(np.floor(n_fine / factor + 1e-6)))


@lru_cache(maxsize=128)
def _profile_matrix(n_fine: int, factor: float, fwhm: float, shape: str, tbw: float) -> np.ndarray:
    n_slabs = slab_count(n_fine, factor)
    centres = (np.arange(n_slabs) + 0.5) * factor - 0.5
    edges = np.arange(n_fine + 1, dtype=np.float64) - 0.5
    cdf = profile_cdf(edges[None, :] - centres[:, None], shape, fwhm, tbw)
    weights = np.diff(cdf, axis=1)
    total = weights.sum(axis=1, keepdims=True)
    weights /= np.where(np.abs(total) > 1e-12, total, 1.0)
    weights[np.abs(weights) < 1e-7] = 0.0
    total = weights.sum(axis=1, keepdims=True)
    weights /= np.where(np.abs(total) > 1e-12, total, 1.0)
    weights.setflags(write=False)
    return weights


def profile_matrix(n_fine: int, factor: float, fwhm: float, shape: str = "gauss",
                   tbw: float = DEFAULT_TBW) -> np.ndarray:
    """(n_slabs, n_fine) matrix mapping fine voxels to thick slabs.

    factor: slab spacing / fine spacing (any real >= 1); fwhm: slab thickness in fine voxels
    (below factor: a gap between slabs; above: overlapping slabs).
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if not np.isfinite(fwhm) or fwhm < 0:
        raise ValueError(f"FWHM must be a finite number >= 0, got {fwhm}")
    check_shape(shape, tbw)
    return _profile_matrix(int(n_fine), round(float(factor), 9), round(float(fwhm), 9),
                           shape, round(float(tbw), 6))


def degrade(array: np.ndarray, axis: int, factor: float, fwhm: float, shape: str = "gauss",
            tbw: float = DEFAULT_TBW) -> np.ndarray:
    """Thick slices of `array` along `axis` with the given profile, spacing factor, same FOV start."""
    matrix = profile_matrix(array.shape[axis], factor, fwhm, shape, tbw).astype(np.float32)
    moved = np.moveaxis(array.astype(np.float32, copy=False), axis, 0)
    out = np.tensordot(matrix, moved, axes=(1, 0))
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))
