"""The confidence map: per output voxel, the expected absolute error of the synthesised value.

Torch-free, and cheap: no network pass beyond inference's own two. Features of each output
voxel, all from what a run already has (normalised intensities, slice-index units):
  spread*     |row pass - col pass| of `networks.infer.super_resolve` (two test-time
              variants the network computes anyway), Gaussian-smoothed (sigma 1 and 2 voxels);
              where one pass keeps the pretrained network (`networks.backends.PerPlane`: one
              fine in-plane axis) it also holds the two networks' difference, which the
              calibration (brain volumes, one network) never saw
  deviation*  |output - linear interpolation of the thick slices|, smoothed (sigma 1 and 2)
  through     |through-plane derivative| of the output (Gaussian derivative, sigma 1)
  gradient*   gradient magnitude of the output (sigma 0.5, 1, 2)
  intensity*  the output itself, and smoothed (sigma 2, 4): the error depends on the tissue
  local_std   the output's local standard deviation (sigma 3): texture around the voxel
  distance    distance of the voxel's centre from the nearest acquired slab centre, in slice
              spacings (0 at a slab centre, 0.5 half-way between two)
(log of the magnitudes). score = bias + sum_i g_i(feature_i), each g_i piecewise linear on
knots at its feature's 1st..99th percentiles and flat beyond (distance: linear over 0..0.5).
An additive model, so the score streams term by term: at most three output-sized arrays alive
besides the inputs (`runners.memory`). A monotone table (score -> mean |error| over the
calibration voxels, isotonic) maps the score to the expected absolute error in the input's
normalised intensity (`acquisition.metrics.normaliser`: the input's 0.5th..99.5th percentiles
-> 0..1).

The terms live in `data/models/confidence.json`, fitted on the SEEN bench volumes only:
`python scripts/confidence_eval.py --fit` (the docstring there gives the run time); the same
script measures it on the held-out volumes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from scipy import ndimage

from ..resources import DATA_DIR

CALIBRATION = DATA_DIR / "models" / "confidence.json"
EPS = 1e-3
UNIT = "expected absolute error, normalised intensity (input 0.5th..99.5th percentile -> 0..1)"
CENTRE = 0.25  # voxels nearer than this (slice spacings) to a slab centre are "at the centre"
CHUNK = 1 << 20  # voxels per np.interp call (its float64 result stays small)


def slab_distance(positions: np.ndarray) -> np.ndarray:
    """Distance of each output slice from the nearest acquired slab centre (slice spacings)."""
    positions = np.asarray(positions, np.float64)
    return np.abs(positions - np.round(positions)).astype(np.float32)


def linear_through(thick: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The thick slices (axis 0) linearly interpolated at `positions` (clamped at the ends);
    one output-sized array (plus a slice) alive."""
    p = np.clip(np.asarray(positions, np.float64), 0, len(thick) - 1)
    i0 = np.floor(p).astype(int)
    i1 = np.minimum(i0 + 1, len(thick) - 1)
    w = (p - i0).astype(np.float32)
    out = thick[i0]
    for k in range(len(out)):
        out[k] *= 1 - w[k]
        out[k] += w[k] * thick[i1[k]]
    return out


def _log(array: np.ndarray) -> np.ndarray:
    array += EPS
    return np.log(array, out=array)


def _deviation(thick, output, positions, sigma):
    deviation = linear_through(thick, positions)
    np.subtract(output, deviation, out=deviation)
    np.abs(deviation, out=deviation)
    return _log(ndimage.gaussian_filter(deviation, sigma, output=deviation))


def _through(output, sigma):
    derivative = ndimage.gaussian_filter1d(output, sigma, axis=0, order=1)
    return _log(np.abs(derivative, out=derivative))


def _gradient(output, sigma):
    """Gaussian gradient magnitude with two output-sized arrays alive (scipy's holds three)."""
    total = None
    for axis in range(output.ndim):
        order = [0] * output.ndim
        order[axis] = 1
        derivative = ndimage.gaussian_filter(output, sigma, order=order)
        np.multiply(derivative, derivative, out=derivative)
        if total is None:
            total = derivative
        else:
            total += derivative
        del derivative
    return _log(np.sqrt(total, out=total))


def _local_std(output, sigma):
    power = np.multiply(output, output)
    ndimage.gaussian_filter(power, sigma, output=power)
    mean = ndimage.gaussian_filter(output, sigma)
    np.multiply(mean, mean, out=mean)
    power -= mean
    del mean
    np.maximum(power, 0, out=power)
    return _log(np.sqrt(power, out=power))


# name -> feature(thick, output, spread, positions); each computed alone, when its term is added
FEATURES: dict[str, Callable[..., np.ndarray]] = {
    "spread": lambda t, o, s, p: _log(ndimage.gaussian_filter(s, 1.0)),
    "spread_s2": lambda t, o, s, p: _log(ndimage.gaussian_filter(s, 2.0)),
    "deviation": lambda t, o, s, p: _deviation(t, o, p, 1.0),
    "deviation_s2": lambda t, o, s, p: _deviation(t, o, p, 2.0),
    "through": lambda t, o, s, p: _through(o, 1.0),
    "gradient": lambda t, o, s, p: _gradient(o, 1.0),
    "gradient_fine": lambda t, o, s, p: _gradient(o, 0.5),
    "gradient_coarse": lambda t, o, s, p: _gradient(o, 2.0),
    "intensity": lambda t, o, s, p: o,  # read only
    "intensity_s2": lambda t, o, s, p: ndimage.gaussian_filter(o, 2.0),
    "intensity_s4": lambda t, o, s, p: ndimage.gaussian_filter(o, 4.0),
    "local_std": lambda t, o, s, p: _local_std(o, 3.0),
    "distance": lambda t, o, s, p: np.broadcast_to(slab_distance(p)[:, None, None], o.shape),
}
PER_SLICE = {"distance": slab_distance}  # features constant over a slice: scored per slice
# knots fixed in advance: the calibration cases (x4) have only two slab distances (0.125,
# 0.375); a term linear over the whole range 0..0.5 holds at every factor
FIXED_KNOTS = {"distance": (0.0, 0.5)}


def features(thick: np.ndarray, output: np.ndarray, spread: np.ndarray, positions: np.ndarray,
             names: Iterable[str] = FEATURES) -> Iterator[tuple[str, np.ndarray]]:
    """(name, feature) one at a time, so that at most one feature array is alive."""
    for name in names:
        yield name, FEATURES[name](thick, output, spread, positions)


def load_calibration(path: Path | None = None) -> dict:
    return json.loads(Path(path or CALIBRATION).read_text())


def term(values: np.ndarray, knots: list[float], heights: list[float],
         into: np.ndarray | None = None) -> np.ndarray:
    """g(values): piecewise linear through (knots, heights), flat beyond the ends (float32),
    computed in chunks; `into`: added to that (C-contiguous float32) array instead."""
    flat = np.ravel(values)
    if into is not None and not into.flags.c_contiguous:
        raise ValueError("term(into=...) needs a C-contiguous array")
    out = np.zeros(flat.shape, np.float32) if into is None else into.reshape(-1)
    k, h = np.asarray(knots, np.float64), np.asarray(heights, np.float64)
    for start in range(0, flat.size, CHUNK):
        out[start:start + CHUNK] += np.interp(flat[start:start + CHUNK], k, h).astype(np.float32)
    return out.reshape(np.shape(values)) if into is None else into


def score(thick: np.ndarray, output: np.ndarray, spread: np.ndarray, positions: np.ndarray,
          calibration: dict) -> np.ndarray:
    """The additive score (uncalibrated; monotone in the expected error). Each feature is made
    and added alone, so the score, one feature and its filter's temporaries are alive at once."""
    terms = calibration["terms"]
    total = np.full(output.shape, calibration["bias"], np.float32)
    for name, t in terms.items():
        if name in PER_SLICE:
            per_slice = term(PER_SLICE[name](positions), t["knots"], t["heights"])
            total += per_slice[:, None, None]
            continue
        term(FEATURES[name](thick, output, spread, positions), t["knots"], t["heights"],
             into=total)
    return total


def calibrate(values: np.ndarray, calibration: dict) -> np.ndarray:
    """Score -> expected absolute error (the monotone table, flat beyond its ends)."""
    table = calibration["table"]
    return term(values, table["score"], table["error"])


def confidence_map(thick: np.ndarray, output: np.ndarray, spread: np.ndarray,
                   positions: np.ndarray, calibration: dict | None = None) -> np.ndarray:
    """Expected |error| per output voxel (normalised intensity); canonical arrays, axis 0 the
    slice axis; `thick` and `output` normalised, `spread` from `super_resolve(spread=True)`."""
    calibration = calibration or load_calibration()
    return calibrate(score(thick, output, spread, positions, calibration), calibration)


def describe(calibration: dict) -> str:
    """The map's provenance text: what it is, its unit, how it was calibrated."""
    return (f"confidence map: {UNIT}; calibrated on {calibration.get('fitted_on', '?')} "
            f"({calibration.get('command', '?')})")


# ------------------------------------------------------------------------------ fitting
def tents(values: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """The piecewise-linear basis on `knots` (one column per knot but the first: the bias
    carries it), so that a term's heights are a least-squares solution."""
    columns = []
    for j in range(1, len(knots)):
        unit = np.zeros(len(knots))
        unit[j] = 1.0
        columns.append(np.interp(values, knots, unit))
    return np.stack(columns, 1)


def fit(samples: list[tuple[dict[str, np.ndarray], np.ndarray]], names: tuple[str, ...],
        knots: int = 8, ridge: float = 1e-3, bins: int = 24) -> dict:
    """Ridge least squares of log(|error| + EPS) on the piecewise-linear terms (knots at each
    feature's quantiles), then the isotonic table of mean |error| per score quantile.
    samples: (features {name: values (1-D)}, |error|) per case."""
    x = {n: np.concatenate([f[n] for f, _ in samples]).astype(np.float64) for n in names}
    y = np.concatenate([e for _, e in samples]).astype(np.float64)
    # outer knots at the 1st and 99th percentiles: the terms stay flat beyond them rather
    # than following a few outliers' slope
    grid = {n: np.asarray(FIXED_KNOTS[n]) if n in FIXED_KNOTS
            else np.unique(np.quantile(x[n], np.linspace(0.01, 0.99, knots))) for n in names}
    design = np.concatenate([np.ones((len(y), 1))] + [tents(x[n], grid[n]) for n in names], 1)
    coef = np.linalg.solve(design.T @ design + ridge * np.eye(design.shape[1]),
                           design.T @ np.log(y + EPS))
    terms, at = {}, 1
    for n in names:
        k = len(grid[n])
        terms[n] = {"knots": [round(float(v), 6) for v in grid[n]],
                    "heights": [0.0] + [round(float(v), 6) for v in coef[at:at + k - 1]]}
        at += k - 1
    s = design @ coef
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    centres = np.array([s[which == b].mean() for b in range(bins)])
    errors = np.array([y[which == b].mean() for b in range(bins)])
    errors = _isotonic(errors, np.bincount(which, minlength=bins).astype(np.float64))
    return {"bias": float(coef[0]), "terms": terms,
            "table": {"score": [round(float(v), 5) for v in centres],
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
