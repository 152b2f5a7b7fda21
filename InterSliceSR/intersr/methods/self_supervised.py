"""Self-supervised adaptation (stage 3): learn the volume's own thick-slice mapping in-plane.

The target volume's in-plane axes are fine; degrading one of them with the slice profile at the
slice spacing gives pairs whose mapping is the one inference applies across slices. The
profile is the estimated one (profile.py), or every profile the estimate could not rule out:
pairs are drawn from each in turn. When the requested output spacing is coarser than the
in-plane spacing, the in-plane axes are first brought to that resolution with the same profile
shape, so the network learns to make slices as acquired at the requested spacing, not point
samples at the in-plane spacing; only the axis the pairs run along is brought there, the
other keeps its own spacing, as the slices' in-plane axis does at inference. Every 8th slice
is held out; adaptation stops at the step or time budget, or early when the held-out loss
stops improving, and keeps the best of the weights' moving average (WEIGHT_AVERAGE).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..acquisition.degrade import SliceProfile, degrade
from ..acquisition.pairs import PairBatch, PlanePairs
from ..progress import Progress
from ..volumes.grid import fine_inplane_axes
from .results import AdaptResult

HOLDOUT_EVERY = 8
# Adaptation checks and keeps a moving average of the weights (about the last 100 steps), not
# the last step's: batches of 8 planes make each step noisy (measured on 9 seen-volume cases:
# +0.015 dB median per case [-0.10, +0.04], within seed noise; docs/weight_average_seen.md).
WEIGHT_AVERAGE = 0.99


@dataclass
class AdaptConfig:
    steps: int | None = None  # hard step budget
    seconds: float | None = None  # wall-clock budget
    batch: int = 8
    lr: float = 2e-4
    eval_every: int = 25
    patience: int = 8  # evaluations without improvement before stopping early
    seed: int = 0
    average: float = WEIGHT_AVERAGE  # decay of the weights' moving average (0: raw weights)
    # Steps (multiples of eval_every) at which to keep what a budget of that many steps would
    # return: one run gives a whole quality-vs-budget curve (the bench's --curve).
    keep_at: tuple[int, ...] = ()


COARSER = 1.25  # output spacing this much above the in-plane spacing: learn at its resolution


def at_target_resolution(volume: np.ndarray, spacing: tuple[float, float, float],
                         target: float | None, profile: SliceProfile,
                         axes: tuple[int, ...] = (1, 2)
                         ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """In-plane axes (`axes`) brought to the requested output spacing when that is coarser.

    Each is degraded with the slice profile's shape at FWHM = target x (FWHM / slice
    spacing): what slices acquired at the target spacing would show along it.
    """
    s, r, c = spacing
    if target is None or target <= COARSER * min(r, c):
        return volume, spacing
    ratio = profile.fwhm / s
    out, new = volume, [s, r, c]
    for axis in axes:
        factor = target / new[axis]
        if factor > 1.0 + 1e-6:
            out = degrade(out, axis, factor, ratio * factor, profile.shape, profile.tbw)
            new[axis] = new[axis] * factor
    return out, (new[0], new[1], new[2])


def as_profiles(profiles: list[SliceProfile] | SliceProfile | float) -> list[SliceProfile]:
    """A list of profiles; a bare number is the FWHM (mm) of a Gaussian."""
    if isinstance(profiles, (int, float)):
        return [SliceProfile("gauss", float(profiles))]
    return [profiles] if isinstance(profiles, SliceProfile) else list(profiles)


def inplane_samplers(volume: np.ndarray, spacing: tuple[float, float, float],
                     profiles: list[SliceProfile] | SliceProfile | float,
                     train_slices: np.ndarray, target_spacing: float | None = None,
                     **kwargs) -> list[PlanePairs]:
    """Pairs from both in-plane axes of a canonical (slices, rows, cols) normalised volume,
    one sampler per (profile, axis); a coarser `target_spacing` is learnt at its resolution
    (the first profile's shape) along the axis the pairs run along only."""
    return sampler_sets(volume, spacing, profiles, [train_slices], target_spacing, **kwargs)[0]


def sampler_sets(volume: np.ndarray, spacing: tuple[float, float, float],
                 profiles: list[SliceProfile] | SliceProfile | float,
                 slice_sets: list[np.ndarray], target_spacing: float | None = None,
                 **kwargs) -> list[list[PlanePairs]]:
    """`inplane_samplers` for each set of slices (training, held out), the volume brought to
    the target resolution once per axis for all of them."""
    profiles = as_profiles(profiles)
    sets: list[list[PlanePairs]] = [[] for _ in slice_sets]
    sources = fine_inplane_axes(spacing)  # a much coarser in-plane axis is itself thick
    for axis, other in ((1, 2), (2, 1)):
        if axis not in sources:
            continue
        array, (s, r, c) = at_target_resolution(volume, spacing, target_spacing, profiles[0],
                                                axes=(axis,))
        fine = (s, r, c)[axis]
        for profile in profiles:
            for samplers, slices in zip(sets, slice_sets):
                try:
                    samplers.append(PlanePairs(array, axis, other, s / fine, profile.fwhm / fine,
                                               fixed=slices, shape=profile.shape,
                                               tbw=profile.tbw, **kwargs))
                except ValueError:
                    continue  # this in-plane axis is too short for the factor
    return sets


def _loss(model: torch.nn.Module, batch: PairBatch, device: torch.device) -> torch.Tensor:
    pred = model(batch.thick.to(device), batch.positions.to(device), batch.factor, batch.blur)
    return torch.nn.functional.l1_loss(pred, batch.fine.to(device))


def evaluate(model: torch.nn.Module, batches: list[PairBatch], device: torch.device) -> float:
    model.eval()
    with torch.no_grad():
        value = float(np.mean([_loss(model, b, device).item() for b in batches]))
    model.train()
    return value


def held_out_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: every HOLDOUT_EVERY-th one is held out (all of them if tiny)."""
    index = np.arange(n)
    held_out = index[index % HOLDOUT_EVERY == HOLDOUT_EVERY // 2]
    train = np.setdiff1d(index, held_out)
    if len(held_out) == 0 or len(train) == 0:
        return index, index
    return train, held_out


def adapt(model: torch.nn.Module, volume: np.ndarray, spacing: tuple[float, float, float],
          profiles: list[SliceProfile] | SliceProfile | float, config: AdaptConfig,
          device: torch.device, progress: Progress | None = None,
          target_spacing: float | None = None) -> AdaptResult:
    """Fine-tune `model` in place on pairs from `volume`; returns what happened.

    profiles: the slice profile(s) to learn (a bare number is a Gaussian FWHM in mm);
    target_spacing: the requested output spacing (mm) along the slice axis.
    """
    profiles = as_profiles(profiles)
    train, held_out = held_out_split(volume.shape[0])
    samplers, checks = sampler_sets(volume, spacing, profiles, [train, held_out],
                                    target_spacing)
    if not samplers:
        raise ValueError("in-plane axes are too short to learn from at this slice spacing")
    return fit(model, samplers, checks, config, device, progress)


def update_average(averaged: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """averaged <- decay x averaged + (1 - decay) x model, parameter by parameter."""
    with torch.no_grad():
        for mean, current in zip(averaged.state_dict().values(), model.state_dict().values()):
            if mean.dtype.is_floating_point:
                mean.lerp_(current, 1.0 - decay)
            else:
                mean.copy_(current)


def fit(model: torch.nn.Module, samplers: list[PlanePairs], checks: list[PlanePairs],
        config: AdaptConfig, device: torch.device,
        progress: Progress | None = None) -> AdaptResult:
    """The one training loop: batches from `samplers` in turn, held-out loss on `checks`.

    Stops at the step or time budget, or early when the held-out loss stops improving, and
    keeps the best weights. Adaptation and the VAE-pairs method both train through here.
    """
    result = AdaptResult(beside=tuple(sorted({sampler.other for sampler in samplers})))
    if any(k <= 0 or k % config.eval_every for k in config.keep_at):
        raise ValueError(f"keep_at steps must be positive multiples of {config.eval_every}")
    rng = np.random.default_rng(config.seed)
    val_rng = np.random.default_rng(config.seed + 1)
    reps = max(1, 4 // max(len(checks), 1))
    val_batches = [sampler.sample(config.batch, val_rng, augment=False)
                   for sampler in checks for _ in range(reps)]
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    averaged = copy.deepcopy(model) if config.average else model  # what is checked and kept
    best_state = copy.deepcopy(model.state_dict())
    best = result.initial_loss = evaluate(model, val_batches, device)
    stale = 0
    max_steps = config.steps if config.steps is not None else 10**9
    planned = config.steps if config.steps is not None else None
    start = time.monotonic()
    step = 0
    running = None
    while step < max_steps:
        elapsed = time.monotonic() - start
        if config.seconds is not None and elapsed >= config.seconds:
            break
        batch = samplers[step % len(samplers)].sample(config.batch, rng)
        loss = _loss(model, batch, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if averaged is not model:
            update_average(averaged, model, min(config.average, (1 + step) / (10 + step)))
        running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
        if step % config.eval_every == 0:
            held = evaluate(averaged, val_batches, device)
            result.history.append((step, running, held))
            if held < best * 0.999:
                best, stale = held, 0
                best_state = copy.deepcopy(averaged.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    result.stopped_early = True
            if step in config.keep_at:
                result.kept[step] = (copy.deepcopy(best_state), time.monotonic() - start)
            if result.stopped_early:
                break
        if progress is not None:
            if planned is None:  # time budget: express progress in seconds
                total = max(int(config.seconds or 1), 1)
                progress.update("adapt", min(int(time.monotonic() - start), total), total,
                                loss=running, iteration=step)
            else:  # a step cap; with a time budget too, whichever ends first sets the ETA
                eta = {}
                if config.seconds is not None:
                    spent = time.monotonic() - start
                    by_steps = spent / step * (planned - step)
                    eta["eta_s"] = round(max(0.0, min(by_steps, config.seconds - spent)), 1)
                progress.update("adapt", step, planned, loss=running, **eta)
    if step % config.eval_every:
        held = evaluate(averaged, val_batches, device)
        result.history.append((step, running if running is not None else held, held))
        if held < best * 0.999:
            best, best_state = held, copy.deepcopy(averaged.state_dict())
    for k in config.keep_at:  # budgets beyond an early stop return what it kept
        if k not in result.kept:
            result.kept[k] = (copy.deepcopy(best_state), time.monotonic() - start)
    model.load_state_dict(best_state)
    model.eval()
    result.steps = step
    result.seconds = time.monotonic() - start
    result.final_loss = best
    if progress is not None:
        total = planned if planned is not None else max(int(config.seconds or 1), 1)
        progress.update("adapt", total, total, loss=best)
    return result


def fit_method(model: torch.nn.Module, normalised: np.ndarray, spacing3: tuple[float, float, float],
        profiles, factor: float, config: AdaptConfig, device: torch.device, progress: Progress,
        *, target_spacing: float | None = None, method: str = "self-supervised"
        ) -> tuple[AdaptResult, dict[str, str]]:
    """The method interface (methods/__init__.py): adapt in place; (summary, extra provenance)."""
    return adapt(model, normalised, spacing3, profiles, config, device, progress,
                 target_spacing=target_spacing), {}
