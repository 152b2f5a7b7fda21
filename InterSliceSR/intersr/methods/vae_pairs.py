"""The VAE-pairs method (Xuan et al. 2021): train the SR network on synthetic HR volumes.

1. A SliceVAE learns the target volume's own thick slices (stage "vae").
2. It synthesises an HR volume on the output grid (spacing s / k) by decoding interpolated
   latent codes of neighbouring slices (stage "synth").
3. The synthetic HR volume is degraded again with the slice profile by the one degradation
   model (PlanePairs along the slice axis), and the pretrained SR network is fine-tuned on those
   synthetic LR-HR pairs with the one training loop (stage "adapt"). Synthetic HR is never
   paired with the real LR: the pairs stay consistent even where the VAE morphs anatomy.
   The weights kept are chosen on held-out in-plane pairs of the real volume (see below).
The combination ("vae-combined") also draws the in-plane self-supervised pairs of the real
volume, batch about batch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..acquisition.degrade import SliceProfile
from ..acquisition.pairs import PlanePairs
from ..progress import Progress
from ..volumes.grid import output_positions
from .self_supervised import (AdaptConfig, AdaptResult, as_profiles, fit, held_out_split,
                              inplane_samplers)
from .vae import VAEConfig, VAEResult, synthesise, train_vae

VAE_SHARE = 0.35  # share of a time budget spent on training the VAE
VAE_MAX_STEPS = 1500  # the VAE's loss flattens well before this on a brain volume


@dataclass
class VAEPairsResult:
    vae: VAEResult
    adaptation: AdaptResult
    synthetic_shape: tuple[int, int, int]


def vae_config(config: AdaptConfig) -> VAEConfig:
    """The VAE's share of the run's budget: the same step count, or VAE_SHARE of the time."""
    steps = min(config.steps, VAE_MAX_STEPS) if config.steps is not None else None
    seconds = VAE_SHARE * config.seconds if config.seconds is not None else None
    return VAEConfig(steps=steps, seconds=seconds, seed=config.seed)


def synthetic_samplers(synthetic: np.ndarray, factor: float, profiles: list[SliceProfile],
                       slice_spacing: float, planes: np.ndarray) -> list[PlanePairs]:
    """Through-plane pairs of a synthetic HR (fine slices, rows, cols) volume.

    factor is in synthetic-slice units; each profile (FWHM in mm, relative to the input's
    `slice_spacing`) is one sampler per plane orientation, so the pairs carry the estimated
    profile(s) exactly as self-supervised adaptation does; `planes` lists the rows/cols
    allowed as planes (held-out ones stay out). Each plane (slices x rows or slices x cols) is
    degraded along the slice axis, i.e. exactly the mapping inference applies.
    """
    samplers = []
    for profile in profiles:
        fwhm = profile.fwhm / slice_spacing * factor  # in synthetic-slice units
        for other in (2, 1):
            third = 3 - other
            fixed = planes[planes < synthetic.shape[third]]
            try:
                samplers.append(PlanePairs(synthetic, 0, other, factor, fwhm, fixed=fixed,
                                           shape=profile.shape, tbw=profile.tbw))
            except ValueError:
                continue
    return samplers


def train_on_vae_pairs(model: torch.nn.Module, volume: np.ndarray,
                       spacing: tuple[float, float, float],
                       profiles: list[SliceProfile] | SliceProfile | float, factor: float,
                       config: AdaptConfig, device: torch.device, combined: bool = False,
                       progress: Progress | None = None) -> VAEPairsResult:
    """Fine-tune `model` in place on VAE-synthesised pairs of the normalised `volume`.

    spacing: (slice, row, col) mm; profiles: the slice profile(s) to learn (profile.py; a bare
    number is a Gaussian FWHM in mm); factor: slice spacing / output spacing (the synthetic
    volume's spacing is the requested output spacing).
    """
    profiles = as_profiles(profiles)
    vae, vae_result = train_vae(volume, vae_config(config), device, progress)
    fine = output_positions(volume.shape[0], factor)
    synthetic = synthesise(vae, volume, fine, device, progress)
    del vae
    train, held_out = held_out_split(max(synthetic.shape[1:]))
    samplers = synthetic_samplers(synthetic, factor, profiles, spacing[0], train)
    slices_train, slices_held = held_out_split(volume.shape[0])
    # Model selection on the real volume: the network trains on synthetic pairs, but the
    # weights kept are the ones that do best on held-out in-plane pairs of the real data
    # (the starting weights included). Measured (docs/vae.md): judged on synthetic pairs, the
    # fine-tuning learns the decoder's smooth in-between slices and ends up to 1 dB below the
    # network it started from. Synthetic checks only where the in-plane axes are too short.
    checks = (inplane_samplers(volume, spacing, profiles, slices_held)
              or synthetic_samplers(synthetic, factor, profiles, spacing[0], held_out))
    if combined:
        samplers += inplane_samplers(volume, spacing, profiles, slices_train)
    if not samplers or not checks:
        raise ValueError(f"{volume.shape[0]} slices are too few to make synthetic pairs at "
                         f"factor {factor:.3g}")
    rest = dataclasses.replace(config, seconds=None if config.seconds is None
                               else max(config.seconds - vae_result.seconds, 1.0))
    result = fit(model, samplers, checks, rest, device, progress)
    return VAEPairsResult(vae=vae_result, adaptation=result,
                          synthetic_shape=tuple(synthetic.shape))


def fit_method(model: torch.nn.Module, normalised: np.ndarray, spacing3: tuple[float, float, float],
        profiles, factor: float, config: AdaptConfig, device: torch.device, progress: Progress,
        *, target_spacing: float | None = None, method: str = "vae-pairs"
        ) -> tuple[AdaptResult, dict[str, str]]:
    """The method interface (methods/__init__.py); vae-combined adds the in-plane pairs."""
    pairs = train_on_vae_pairs(model, normalised, spacing3, profiles, factor, config, device,
                               combined=method == "vae-combined", progress=progress)
    return pairs.adaptation, {"vae_steps": str(pairs.vae.steps),
                              "vae_final_l1": f"{pairs.vae.final_loss:.6g}",
                              "synthetic_slices": str(pairs.synthetic_shape[0])}
