"""A small VAE of the volume's own slices, and slice synthesis by latent interpolation.

Xuan et al. (Pattern Recognition 2021) synthesise high-resolution volumes from thick-slice
ones with a generative model. Here the VAE learns the target volume's thick slices (whose
in-plane resolution is fine) from random in-plane patches; its latent is a spatial map at a
quarter of the resolution, so it is fully convolutional and decodes whole slices. A slice
between two acquired ones is the decoder's image of a blend of their two codes: the decoder,
not a pixel blend, draws the in-between anatomy. Small enough to train in a minute on a CPU.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..progress import Progress

DOWN = 4  # encoder stride: latent maps are at 1/DOWN of the slice resolution


@dataclass
class VAEConfig:
    steps: int | None = 600  # hard step budget
    seconds: float | None = None  # wall-clock budget
    batch: int = 4  # slice triplets per step
    patch: int = 48  # side of the square training patches (multiple of DOWN)
    channels: int = 16
    latent: int = 8  # latent channels
    beta: float = 1e-3  # weight of the KL term against the L1 reconstruction
    interpolation: float = 1.0  # weight of the midpoint (in-between slice) loss
    lr: float = 1e-3
    seed: int = 0


@dataclass
class VAEResult:
    steps: int = 0
    seconds: float = 0.0
    final_loss: float = float("nan")  # running reconstruction L1 at the end
    history: list[tuple[int, float, float]] = field(default_factory=list)  # step, L1, midpoint L1


class SliceVAE(nn.Module):
    """Convolutional VAE: (B, 1, H, W) with H, W multiples of DOWN <-> (B, latent, H/4, W/4)."""

    def __init__(self, channels: int = 16, latent: int = 8):
        super().__init__()
        c = channels
        act = nn.LeakyReLU(0.2, inplace=True)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), act,
            nn.Conv2d(c, c, 4, stride=2, padding=1), act,
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), act,
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), act,
            nn.Conv2d(2 * c, 2 * latent, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, 2 * c, 3, padding=1), act,
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), act,
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(2 * c, c, 3, padding=1), act,
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c, c, 3, padding=1), act,
            nn.Conv2d(c, 1, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 6.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def _triplets(volume: np.ndarray, size: int, batch: int, rng: np.random.Generator,
              min_mean: float = 0.05) -> torch.Tensor:
    """(3 * batch, 1, size, size): patches of slices k - 1, k, k + 1 at one in-plane place
    (in that order within each third), preferring anatomy."""
    n, rows, cols = volume.shape
    out = np.empty((3, batch, size, size), np.float32)
    for b in range(batch):
        for _ in range(20):
            k = rng.integers(1, n - 1)
            i, j = rng.integers(rows - size + 1), rng.integers(cols - size + 1)
            stack = volume[k - 1:k + 2, i:i + size, j:j + size]
            if stack[1].mean() > min_mean:
                break
        if rng.random() < 0.5:
            stack = stack[:, :, ::-1]
        if rng.random() < 0.5:
            stack = stack[::-1]  # through-plane order does not matter to the midpoint
        out[:, b] = stack
    return torch.from_numpy(out.reshape(3 * batch, 1, size, size))


def train_vae(volume: np.ndarray, config: VAEConfig, device: torch.device,
              progress: Progress | None = None) -> tuple[SliceVAE, VAEResult]:
    """Train a SliceVAE on in-plane patches of a normalised (slices, rows, cols) volume.

    Besides reconstruction and the KL term, the decoded midpoint of the codes of slices k - 1
    and k + 1 must reproduce slice k (an interpolation loss, as in Sander et al. 2022): the
    decoder learns from the volume's own slices how anatomy changes between them, so latent
    interpolation generates in-between slices instead of blending neighbours.
    """
    n, rows, cols = volume.shape
    size = min(config.patch, rows, cols) // DOWN * DOWN
    if size < 2 * DOWN or n < 3:
        raise ValueError(f"{n} slices of {rows}x{cols} voxels are too few or too small for the "
                         f"VAE (at least 3 slices of {2 * DOWN}x{2 * DOWN})")
    rng = np.random.default_rng(config.seed)
    noise = torch.Generator().manual_seed(config.seed)
    vae = SliceVAE(config.channels, config.latent).to(device).train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr)
    result = VAEResult()
    max_steps = config.steps if config.steps is not None else 10**9
    total = config.steps if config.steps is not None else max(int(config.seconds or 1), 1)
    start = time.monotonic()
    running = None
    step = 0
    b = config.batch
    while step < max_steps:
        if config.seconds is not None and time.monotonic() - start >= config.seconds:
            break
        x = _triplets(volume, size, b, rng).to(device)
        mu, logvar = vae.encode(x)
        eps = torch.randn(mu.shape, generator=noise).to(device)
        recon = vae.decode(mu + eps * torch.exp(0.5 * logvar))
        l1 = torch.nn.functional.l1_loss(recon, x)
        middle = vae.decode(0.5 * (mu[:b] + mu[2 * b:]))
        between = torch.nn.functional.l1_loss(middle, x[b:2 * b])
        kl = 0.5 * torch.mean(mu.pow(2) + logvar.exp() - 1.0 - logvar)
        loss = l1 + config.interpolation * between + config.beta * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        running = l1.item() if running is None else 0.95 * running + 0.05 * l1.item()
        if step % 25 == 0:
            result.history.append((step, running, between.item()))
        if progress is not None:
            done = step if config.steps is not None else int(time.monotonic() - start)
            progress.update("vae", min(done, total), total, loss=running)
    vae.eval()
    result.steps, result.seconds = step, time.monotonic() - start
    result.final_loss = running if running is not None else float("nan")
    if progress is not None:
        progress.update("vae", total, total, loss=result.final_loss)
    return vae, result


def _padded(volume: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Edge-pad rows and cols up to multiples of DOWN (the decoder's output is cropped back)."""
    _, rows, cols = volume.shape
    pr, pc = -rows % DOWN, -cols % DOWN
    return np.pad(volume, ((0, 0), (0, pr), (0, pc)), mode="edge"), rows, cols


def synthesise(vae: SliceVAE, volume: np.ndarray, positions: np.ndarray, device: torch.device,
               progress: Progress | None = None, chunk: int = 8) -> np.ndarray:
    """Slices at continuous `positions` (input-slice index units) by latent interpolation.

    Slice p between acquired slices i = floor(p) and i + 1 is D((1 - t) z_i + t z_{i+1}) plus
    the same blend of what the VAE misses on the two acquired slices (x_i - D(z_i)), so the
    decoder draws the change in anatomy while the slices' fine in-plane detail is kept; at
    t = 0 it is exactly slice i. Positions beyond the first/last slice repeat the edge slice.
    The result is clipped to the input's intensity range.
    """
    padded, rows, cols = _padded(volume.astype(np.float32, copy=False))
    n = len(padded)
    low, high = float(volume.min()), float(volume.max())
    with torch.inference_mode():
        codes, detail = [], []
        for a in range(0, n, chunk):
            x = torch.from_numpy(padded[a:a + chunk]).unsqueeze(1).to(device)
            mu, _ = vae.encode(x)
            codes.append(mu)
            detail.append(x - vae.decode(mu))
        z = torch.cat(codes)
        residual = torch.cat(detail)
        pos = np.clip(np.asarray(positions, np.float64), 0.0, n - 1.0)
        lower = np.minimum(np.floor(pos).astype(np.int64), n - 1)
        upper = np.minimum(lower + 1, n - 1)
        t = torch.from_numpy((pos - lower).astype(np.float32)).to(device).view(-1, 1, 1, 1)
        out = np.empty((len(pos), rows, cols), np.float32)
        for a in range(0, len(pos), chunk):
            sl = slice(a, a + chunk)
            lo, up, w = lower[sl], upper[sl], t[sl]
            blend = (1 - w) * z[lo] + w * z[up]
            image = vae.decode(blend) + (1 - w) * residual[lo] + w * residual[up]
            out[sl] = image[:, 0, :rows, :cols].clamp(low, high).cpu().numpy()
            if progress is not None:
                progress.update("synth", min(a + chunk, len(pos)), len(pos))
    return out
