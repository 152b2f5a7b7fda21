"""Intensity harmonisation between stacks and between slices, and robust slice weights.

Why: series of one exam differ in receive gain (a global scale/offset per stack) and, with
interleaved 2-D acquisitions, slightly from slice to slice (even vs odd packets); a slice hit
by motion or an artefact disagrees with the others. Least squares would average all of this
into blur, so scale factors are estimated and outlier slices are down-weighted (never dropped
silently: the counts are reported).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALE_RANGE = (0.7, 1.4)  # per-slice scale factors are clipped to this
OUTLIER_Z = 3.0  # robust z-score above which a slice is down-weighted


@dataclass
class SliceReport:
    scales: np.ndarray  # per-slice multiplicative factor applied to the observed data
    weights: np.ndarray  # per-slice weight in [0, 1]
    downweighted: int  # slices with weight < 1


def robust_linear_fit(x: np.ndarray, y: np.ndarray, iterations: int = 3) -> tuple[float, float]:
    """(a, b) with y ~ a x + b, refitted after dropping residuals beyond 3 robust sigmas."""
    keep = np.ones(x.shape, bool)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        if keep.sum() < 10:
            break
        a, b = np.polyfit(x[keep].astype(np.float64), y[keep].astype(np.float64), 1)
        r = y - (a * x + b)
        mad = 1.4826 * np.median(np.abs(r[keep] - np.median(r[keep]))) + 1e-12
        keep = np.abs(r) < 3 * mad
    return float(a), float(b)


def stack_scale(reference: np.ndarray, other: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Scale/offset mapping `other` onto `reference` (both smoothed, on the output grid)."""
    if mask.sum() < 100:
        return 1.0, 0.0
    step = max(1, int(mask.sum()) // 200000)
    a, b = robust_linear_fit(other[mask][::step], reference[mask][::step])
    if not (0.2 < a < 5.0):  # a fit this far off is a failed fit, not a gain
        return 1.0, 0.0
    return a, b


def slice_harmonise(observed: np.ndarray, simulated: np.ndarray, valid: np.ndarray,
                    axis: int, level: float) -> SliceReport:
    """Per-slice scale (observed / simulated) and robust weights from the residual.

    `level`: intensities above this count as anatomy (scales are estimated there only).
    """
    obs = np.moveaxis(observed, axis, 0)
    sim = np.moveaxis(simulated, axis, 0)
    val = np.moveaxis(valid, axis, 0) > 0
    n = obs.shape[0]
    scales = np.ones(n)
    residual = np.full(n, np.nan)
    for i in range(n):
        m = val[i] & (sim[i] > level)
        if m.sum() < 50:
            continue
        s = float(np.sum(obs[i][m] * sim[i][m]) / max(np.sum(sim[i][m] ** 2), 1e-12))
        scales[i] = np.clip(s, *SCALE_RANGE)
        residual[i] = float(np.sqrt(np.mean((obs[i][m] / scales[i] - sim[i][m]) ** 2)))
    # even/odd packets share their gain: shrink each slice's factor toward its parity's median
    for parity in (0, 1):
        idx = np.arange(parity, n, 2)
        med = np.median(scales[idx])
        scales[idx] = 0.5 * (scales[idx] + med)
    weights = np.ones(n)
    ok = np.isfinite(residual)
    if ok.sum() >= 5:
        med = np.median(residual[ok])
        mad = 1.4826 * np.median(np.abs(residual[ok] - med)) + 1e-6 * (med + 1e-12)
        z = (residual - med) / mad
        bad = ok & (z > OUTLIER_Z)
        weights[bad] = (OUTLIER_Z / z[bad]) ** 2
    return SliceReport(scales, weights, int((weights < 0.999).sum()))


def apply_slices(array: np.ndarray, per_slice: np.ndarray, axis: int,
                 divide: bool = False) -> np.ndarray:
    """Multiply (or divide) each slice along `axis` by its factor."""
    shape = [1, 1, 1]
    shape[axis] = -1
    f = np.asarray(per_slice, np.float32).reshape(shape)
    return array / f if divide else array * f
