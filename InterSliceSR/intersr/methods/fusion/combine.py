"""Multi-stack fusion: several thick-slice series -> one isotropic volume in the reference frame.

Order of work (each step one module): check the stacks, register each to the reference, plan the
output grid, harmonise stack intensities, build the forward operators, form the network prior,
solve the regularised least squares, optionally re-harmonise slices and re-solve.
lam/mu were tuned once on a SEEN bench volume (brain_t1_seg3d), never per case. The network
prior comes in through `upsample` (runners/fuse.py passes the single-volume pipeline), so this
package imports no runner and no torch.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from . import harmonise
from . import register as reg
from .forward import FWHM_TO_SIGMA, Grid, StackOperator, output_grid
from .solve import Problem, solve
from .stacks import Stack, make_stacks

# Tuned once on a SEEN volume (brain_t1_seg3d, three cases); intensities normalised to the reference's
# 99.5th percentile = 1.
LAM = 0.03  # weight of ||x - x_prior||^2 (network prior)
MU = 0.003  # weight of ||grad x||^2 with the prior
MU_CLASSIC = 0.01  # weight of ||grad x||^2 without a prior (classical SRR)
ITERATIONS = 30
RESIDUAL_FLOOR = 0.006  # residual RMS (normalised units) below which a stack counts as clean

Progress = Callable[[str, int, int], None]
# upsample(image, thickness or None, profile shape or "auto") -> (the stack super-resolved on its
# own grid, the profile shape and FWHM in mm it used)
Upsample = Callable[[sitk.Image, Optional[float], str], tuple[sitk.Image, str, float]]
CONTRAST_CORRELATION = 0.5  # below this a stack's anatomy hardly matches the reference's


def resample_to(image: sitk.Image, grid: Grid, transform: Optional[sitk.Transform],
                interpolator=sitk.sitkBSpline) -> np.ndarray:
    """`image` seen on `grid` through `transform` (grid point -> image point), 0 outside."""
    out = sitk.Resample(image, grid.image(), transform or sitk.Transform(), interpolator, 0.0,
                        sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def coverage(image: sitk.Image, grid: Grid, transform: Optional[sitk.Transform]) -> np.ndarray:
    """The output voxels that `image`'s field of view covers through `transform`."""
    ones = sitk.Image(image.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(image)
    return resample_to(ones, grid, transform, sitk.sitkNearestNeighbor) > 0.5


def check_overlap(stacks: list[Stack], reference: int) -> None:
    """Refuse a stack whose field of view does not meet the reference's at all."""
    ref = stacks[reference].image
    for k, st in enumerate(stacks):
        if k != reference and reg._grid_overlap(ref, st.image) == 0.0 and \
                reg._grid_overlap(st.image, ref) == 0.0:
            raise ValueError(f"stack {k} does not overlap the reference stack {reference} "
                             "(their fields of view do not intersect); remove it or check its "
                             "orientation and position")


def fuse(images: list[sitk.Image], thicknesses: list[float | None], *, reference: int = 0,
         spacing: float | None = None, fov: str = "reference", register: bool = True,
         profile: str | list[str] = "gauss", progress: Optional[Progress] = None,
         network: bool = True, adapt: bool = False, prior: str = "spectral",
         lam: float | None = None, mu: float | None = None, iterations: int = ITERATIONS,
         rounds: int = 1, transforms: Optional[list[sitk.Transform]] = None,
         metric: str = "correlation", inplane_fwhm: float = 0.0,
         priors: Optional[list[sitk.Image]] = None, upsample: Optional[Upsample] = None,
         log: Optional[Callable[[str], None]] = None) -> tuple[sitk.Image, dict]:
    """Fuse thick-slice stacks into one isotropic volume on the reference's frame.

    prior: "spectral" (per-stack network outputs combined in k-space, each where it is sharp),
    "mean" (plain average) or "reference" (the reference stack's output only). rounds: slice
    re-harmonisation / robust re-weighting passes after the first solve.
    network=False gives the classical SRR (smoothness prior only, no re-weighting rounds).
    `transforms` (reference -> stack, ITK convention) skip registration; `priors` give
    precomputed network outputs, else `upsample` makes them. A profile "auto" is the one the
    network's run estimated for that stack (Gaussian of the thickness without a network).
    """
    tick = time.monotonic()
    timings: dict[str, float] = {}
    say = progress or (lambda stage, done, total: None)
    warn = log or (lambda message: None)
    shapes = [profile] * len(images) if isinstance(profile, str) else list(profile)
    auto = [shape == "auto" for shape in shapes]
    stacks = make_stacks(images, thicknesses, ["gauss" if a else s for a, s in zip(auto, shapes)])
    warnings: list[str] = []
    if not 0 <= reference < len(stacks):
        raise ValueError(f"reference {reference} is not one of the {len(stacks)} stacks")
    check_overlap(stacks, reference)
    ref = stacks[reference]

    # 1. registration
    registrations: list[Optional[reg.Registration]] = [None] * len(stacks)
    if transforms is not None:
        tfs = [sitk.Euler3DTransform(t) if t is not None else reg.identity() for t in transforms]
    else:
        tfs = [reg.identity() for _ in stacks]
        if register:
            for k, st in enumerate(stacks):
                say("register", k, len(stacks))
                if k != reference:
                    registrations[k] = reg.register(ref, st, metric=metric)
                    tfs[k] = registrations[k].transform
            say("register", len(stacks), len(stacks))
    timings["register"] = time.monotonic() - tick

    # 2. grid, intensity normalisation, stack harmonisation
    t0 = time.monotonic()
    grid = output_grid(ref, spacing, fov, stacks, tfs)
    scale = float(np.percentile(ref.array(), 99.5)) or 1.0
    bspl = [resample_to(st.image, grid, t) / scale for st, t in zip(stacks, tfs)]
    cover = [coverage(st.image, grid, t) for st, t in zip(stacks, tfs)]
    gains = []
    sigma = max(st.thickness for st in stacks) * FWHM_TO_SIGMA / grid.spacing[0]
    ref_smooth = ndimage.gaussian_filter(bspl[reference], sigma)
    for k in range(len(stacks)):
        if k == reference:
            gains.append((1.0, 0.0))
            continue
        mask = cover[k] & cover[reference] & (ref_smooth > 0.1)
        other = ndimage.gaussian_filter(bspl[k], sigma)
        gains.append(harmonise.stack_scale(ref_smooth, other, mask))
        match = float(np.corrcoef(ref_smooth[mask], other[mask])[0, 1]) if mask.sum() > 10 else 0.0
        if not match >= CONTRAST_CORRELATION:
            warnings.append(f"stack {k}'s intensities hardly follow the reference's (correlation "
                            f"{match:.2f} where both see anatomy): a different contrast? The "
                            "fusion assumes one contrast for all stacks")
            warn(f"intersr: warning: {warnings[-1]}")
    data = [np.float32(a) * (st.array() / scale) + np.float32(b)
            for st, (a, b) in zip(stacks, gains)]
    bspl = [np.float32(a) * v + np.float32(b) * c for v, c, (a, b) in zip(bspl, cover, gains)]
    count = np.maximum(sum(c.astype(np.float32) for c in cover), 1)
    average = (sum(bspl) / count).astype(np.float32)
    timings["prepare"] = time.monotonic() - t0

    # 3. network prior (each stack's single-stack SR, in the output grid through its transform)
    t0 = time.monotonic()
    x_prior = None
    if network:
        if priors is None and upsample is None:
            raise ValueError("the network prior needs `priors` or `upsample`")
        outs = []
        use = [reference] if prior == "reference" else range(len(stacks))
        for i, k in enumerate(use):
            say("network", i, len(use))
            if priors is not None:
                up = priors[k]
            else:
                up, shape, fwhm = upsample(stacks[k].image, thicknesses[k],
                                           "auto" if auto[k] else stacks[k].profile)
                if auto[k]:  # the forward model uses what the stack's own run estimated
                    stacks[k] = dataclasses.replace(stacks[k], profile=shape, thickness=fwhm)
            a, b = gains[k]
            outs.append((a * resample_to(up, grid, tfs[k], sitk.sitkLinear) / scale + b, cover[k]))
        say("network", len(use), len(use))
        num = sum(o * c for o, c in outs)
        den = sum(c.astype(np.float32) for _, c in outs)
        x_prior = np.where(den > 0, num / np.maximum(den, 1), average).astype(np.float32)
        if prior == "spectral" and len(outs) > 1:
            filled = [np.where(c, o, x_prior) for o, c in outs]
            normals = [slice_normal(stacks[k], tfs[k], grid) for k in use]
            x_prior = spectral_combine(filled, normals,
                                       [stacks[k].slice_spacing / grid.spacing[0] for k in use])
    timings["network"] = time.monotonic() - t0

    # 4. operators and solve
    t0 = time.monotonic()
    ops = []
    for k, (st, t) in enumerate(zip(stacks, tfs)):
        say("operators", k, len(stacks))
        ops.append(StackOperator(st, grid, t, inplane_fwhm))
    timings["operators"] = time.monotonic() - t0
    t0 = time.monotonic()
    lam_ = (LAM if lam is None else lam) if network else 0.0
    mu_ = (MU if mu is None else mu) if network else (MU_CLASSIC if mu is None else mu)
    weights = [op.valid.copy() for op in ops]
    problem = Problem(ops, data, weights, [1.0] * len(ops))
    x0 = x_prior if x_prior is not None else average
    cg: dict = {}
    x = solve(problem, grid.shape, x0, prior=x_prior, lam=lam_, mu=mu_, iterations=iterations,
              progress=say, info=cg)
    rounds = rounds if network else 0
    slice_reports = []
    stack_w = [1.0] * len(ops)
    for r in range(rounds):  # re-harmonise slices, re-weight slices and stacks, re-solve
        slice_reports = []
        for k, op in enumerate(ops):
            sim = op.forward(x)
            rep = harmonise.slice_harmonise(data[k], sim, op.valid, op.axis, 0.1)
            data[k] = harmonise.apply_slices(data[k], rep.scales, op.axis, divide=True)
            weights[k] = harmonise.apply_slices(op.valid, rep.weights, op.axis)
            slice_reports.append(rep)
            stack_w[k] = noise_weight(data[k], sim, op.valid)
        problem = Problem(ops, data, weights, stack_w)
        x = solve(problem, grid.shape, x, prior=x_prior, lam=lam_, mu=mu_,
                  iterations=max(10, iterations // 2), progress=say, stage=f"round{r + 1}",
                  info=cg)
    timings["solve"] = time.monotonic() - t0
    del ops, problem
    out = grid.image(np.maximum(x, 0) * np.float32(scale))
    timings["total"] = time.monotonic() - tick
    report = {
        "grid": {"size": list(grid.size), "spacing": list(grid.spacing),
                 "origin": list(grid.origin), "direction": list(grid.direction)},
        "reference": reference, "lam": lam_, "mu": mu_, "iterations": iterations,
        "prior": (prior if network else "none"), "adapt": adapt, "timings": timings,
        "warnings": warnings, "cg": cg,
        "stacks": [{
            "name": st.name, "slice_axis": st.slice_axis, "thickness": st.thickness,
            "profile": st.profile, "transform_parameters": list(t.GetParameters()),
            "transform_center": list(t.GetFixedParameters()),
            "registration_metric": registrations[k].metric if registrations[k] else None,
            "overlap": registrations[k].overlap if registrations[k] else None,
            "intensity_scale": gains[k][0], "intensity_offset": gains[k][1] * scale,
            "downweighted_slices": slice_reports[k].downweighted if slice_reports else 0,
            "data_weight": stack_w[k],
        } for k, (st, t) in enumerate(zip(stacks, tfs))],
    }
    return out, report


def noise_weight(observed: np.ndarray, simulated: np.ndarray, valid: np.ndarray) -> float:
    """w_k = min(1, (r0 / r_k)^2) from the stack's residual RMS r_k on the anatomy.

    Why: the residual of a fitted estimate measures the stack's noise; weighting a stack by
    its inverse noise variance (floored by r0, the residual of clean data) regularises noisy
    exams more without re-tuning lam/mu per case.
    """
    m = (valid > 0) & (simulated > 0.1)
    if m.sum() < 100:
        return 1.0
    r = float(np.sqrt(np.mean((observed[m] - simulated[m]) ** 2)))
    return min(1.0, (RESIDUAL_FLOOR / max(r, 1e-6)) ** 2)


def slice_normal(stack: Stack, transform: sitk.Transform, grid: Grid) -> np.ndarray:
    """The stack's slice normal in the output grid's index axes (numpy z, y, x order)."""
    d = np.asarray(stack.image.GetDirection()).reshape(3, 3)[:, stack.slice_axis]
    a = np.asarray(sitk.Euler3DTransform(transform).GetMatrix()).reshape(3, 3)
    n = grid.matrix().T @ (a.T @ d)  # stack space -> reference space -> grid axes (x, y, z)
    return n[::-1] / np.linalg.norm(n)


def spectral_combine(volumes: list[np.ndarray], normals: list[np.ndarray],
                     factors: list[float]) -> np.ndarray:
    """Combine per-stack network outputs in k-space, each trusted where it is sharp.

    Why: a stack's output is measured in-plane and only inferred along its slice normal, so a
    frequency f is taken mostly from the stacks whose normal is most orthogonal to f.
    """
    shape = volumes[0].shape
    freqs = np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]),
                        np.fft.rfftfreq(shape[2]), indexing="ij", sparse=True)
    weights = []
    for n, k in zip(normals, factors):
        along = (freqs[0] * n[0] + freqs[1] * n[1] + freqs[2] * n[2]) * k  # cycles per slice
        weights.append((1.0 / (0.01 + along * along)).astype(np.float32))
    total = sum(weights)
    out = np.zeros((shape[0], shape[1], shape[2] // 2 + 1), np.complex64)
    for v, w in zip(volumes, weights):
        out += np.fft.rfftn(v).astype(np.complex64) * (w / total)
    return np.fft.irfftn(out, s=shape, axes=(0, 1, 2)).astype(np.float32)


def transforms_of(report: dict) -> list[sitk.Euler3DTransform]:
    """Each stack's rigid transform (reference -> stack) back from a `fuse` report."""
    transforms = []
    for entry in report["stacks"]:
        transform = sitk.Euler3DTransform()
        transform.SetFixedParameters(entry["transform_center"])
        transform.SetParameters(entry["transform_parameters"])
        transforms.append(transform)
    return transforms


def bspline_baselines(images: list[sitk.Image], transforms: list[sitk.Transform],
                      grid_image: sitk.Image) -> list[np.ndarray]:
    """Each stack B-spline-resampled onto the output grid through its transform (bench)."""
    grid = Grid.of(grid_image)
    return [resample_to(sitk.Cast(im, sitk.sitkFloat32), grid, t) for im, t in
            zip(images, transforms)]
