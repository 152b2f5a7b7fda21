"""The confidence map: per output voxel, the expected absolute error of the synthesised value.

Torch-free, and cheap: no network pass beyond inference's own two. Five features of each output
voxel, all from what a run already has (normalised intensities, slice-index units):
  spread      |row pass - col pass| of `networks.infer.super_resolve` (two test-time
              variants the network computes anyway), Gaussian-smoothed (sigma 1 voxel); where
              one pass keeps the pretrained network (`networks.backends.PerPlane`: one fine
              in-plane axis) it also holds the two networks' difference, which the
              calibration (brain volumes, one network) never saw
  deviation   |output - linear interpolation of the thick slices|, smoothed (sigma 1)
  through     |through-plane derivative| of the output (Gaussian derivative, sigma 1)
  gradient    gradient magnitude of the output (sigma 1)
  distance    distance of the voxel's centre from the nearest acquired slab centre, in slice
              spacings (0 at a slab centre, 0.5 half-way between two)
score = b0 + sum_i w_i log(f_i + eps) + w_d distance (log-linear), then a monotone table
(score -> mean |error| over the calibration voxels, isotonic) maps the score to the expected
absolute error in the input's normalised intensity (`acquisition.metrics.normaliser`: the
input's 0.5th..99.5th percentiles -> 0..1).

The coefficients live in `data/models/confidence.json`, fitted on the SEEN bench volumes only:
`python scripts/confidence_eval.py --fit` (the docstring there gives the run time); the same
script measures it on the held-out volumes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy import ndimage

from ..resources import DATA_DIR

CALIBRATION = DATA_DIR / "models" / "confidence.json"
FEATURES = ("spread", "deviation", "through", "gradient")  # log-features; distance is linear
EPS = 1e-3
SIGMA = 1.0
UNIT = "expected absolute error, normalised intensity (input 0.5th..99.5th percentile -> 0..1)"
CENTRE = 0.25  # voxels nearer than this (slice spacings) to a slab centre are "at the centre"


def slab_distance(positions: np.ndarray) -> np.ndarray:
    """Distance of each output slice from the nearest acquired slab centre (slice spacings)."""
    positions = np.asarray(positions, np.float64)
    return np.abs(positions - np.round(positions)).astype(np.float32)


def linear_through(thick: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The thick slices (axis 0) linearly interpolated at `positions` (clamped at the ends)."""
    p = np.clip(np.asarray(positions, np.float64), 0, len(thick) - 1)
    i0 = np.floor(p).astype(int)
    i1 = np.minimum(i0 + 1, len(thick) - 1)
    w = (p - i0).astype(np.float32)[:, None, None]
    out = thick[i0] * (1 - w)
    out += thick[i1] * w
    return out


def log_features(thick: np.ndarray, output: np.ndarray, spread: np.ndarray,
                 positions: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """(name, log(feature + EPS)) one at a time, so that at most one extra array is alive."""
    yield "spread", _log(ndimage.gaussian_filter(spread, SIGMA))
    deviation = linear_through(thick, positions)
    np.subtract(output, deviation, out=deviation)
    np.abs(deviation, out=deviation)
    yield "deviation", _log(ndimage.gaussian_filter(deviation, SIGMA, output=deviation))
    del deviation
    yield "through", _log(np.abs(ndimage.gaussian_filter1d(output, SIGMA, axis=0, order=1)))
    yield "gradient", _log(ndimage.gaussian_gradient_magnitude(output, SIGMA))


def _log(array: np.ndarray) -> np.ndarray:
    array += EPS
    return np.log(array, out=array)


def load_calibration(path: Path | None = None) -> dict:
    return json.loads(Path(path or CALIBRATION).read_text())


def score(thick: np.ndarray, output: np.ndarray, spread: np.ndarray, positions: np.ndarray,
          weights: dict) -> np.ndarray:
    """The log-linear score (uncalibrated; monotone in the expected error)."""
    total = np.full(output.shape, weights["bias"], np.float32)
    for name, feature in log_features(thick, output, spread, positions):
        total += np.float32(weights[name]) * feature
    total += (np.float32(weights["distance"]) * slab_distance(positions))[:, None, None]
    return total


def calibrate(values: np.ndarray, calibration: dict) -> np.ndarray:
    """Score -> expected absolute error (the monotone table, flat beyond its ends)."""
    table = calibration["table"]
    return np.interp(values, np.asarray(table["score"], np.float32),
                     np.asarray(table["error"], np.float32)).astype(np.float32)


def confidence_map(thick: np.ndarray, output: np.ndarray, spread: np.ndarray,
                   positions: np.ndarray, calibration: dict | None = None) -> np.ndarray:
    """Expected |error| per output voxel (normalised intensity); canonical arrays, axis 0 the
    slice axis; `thick` and `output` normalised, `spread` from `super_resolve(spread=True)`."""
    calibration = calibration or load_calibration()
    return calibrate(score(thick, output, spread, positions, calibration["weights"]), calibration)


def describe(calibration: dict) -> str:
    """The map's provenance text: what it is, its unit, how it was calibrated."""
    return (f"confidence map: {UNIT}; calibrated on {calibration.get('fitted_on', '?')} "
            f"({calibration.get('command', '?')})")


# ------------------------------------------------------------------------------ fitting
def fit(samples: list[tuple[dict[str, np.ndarray], np.ndarray]], bins: int = 24) -> dict:
    """Least squares of log(|error| + EPS) on the log-features and distance, then the
    isotonic table of mean |error| per score quantile. samples: (features, |error|) with
    features {name: log-feature values (1-D), "distance": distances (1-D)}."""
    names = (*FEATURES, "distance")
    x = np.concatenate([np.stack([f[n] for n in names], 1) for f, _ in samples]).astype(np.float64)
    y = np.concatenate([e for _, e in samples]).astype(np.float64)
    design = np.c_[np.ones(len(x)), x]
    coef, *_ = np.linalg.lstsq(design, np.log(y + EPS), rcond=None)
    weights = {"bias": float(coef[0]), **{n: float(c) for n, c in zip(names, coef[1:])}}
    s = design @ coef
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    centres = np.array([s[which == b].mean() for b in range(bins)])
    errors = np.array([y[which == b].mean() for b in range(bins)])
    errors = _isotonic(errors, np.bincount(which, minlength=bins).astype(np.float64))
    return {"weights": weights, "table": {"score": [round(float(v), 5) for v in centres],
                                          "error": [round(float(v), 6) for v in errors]}}


def _isotonic(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing sequence nearest `values` (weighted)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for v, w in zip(values, counts):
        blocks.append([float(v), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([[m] * n for m, _, n in blocks])
