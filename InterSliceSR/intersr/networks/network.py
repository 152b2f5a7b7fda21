"""Arbitrary-scale inter-slice networks, applied to 2-D planes (slice axis x one in-plane axis).

`SliceINR` (the shipped design) is an SA-INR-like implicit network cut down to run on a CPU:
a residual CNN encodes the thick slices at their own resolution, and a decoder (an MLP as
1x1 convolutions) is queried at any continuous slice position t with the features of the two
neighbouring slabs, the offset to them, the scale 1/k and the relative slab thickness. Its
output is added to linear interpolation, so it learns what interpolation misses: the
in-between anatomy and the slice blur. Because t is continuous, factors like 2.5 or 6.6
need no retraining.

`InterpCNN` is the comparison design (SMORE-like): the same residual CNN run on the
linearly interpolated plane at the output resolution.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetConfig:
    design: str = "inr"  # "inr" (SliceINR) or "cnn" (InterpCNN)
    channels: int = 32
    blocks: int = 6
    hidden: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * self.conv2(self.act(self.conv1(x)))


class Encoder(nn.Module):
    def __init__(self, in_channels: int, channels: int, blocks: int):
        super().__init__()
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.tail = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return h + self.tail(self.body(h))


def neighbours(positions: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices of the slabs below/above each position and the offset from the lower one."""
    lower = torch.floor(positions).clamp(0, n - 1).long()
    upper = (lower + 1).clamp(max=n - 1)
    offset = positions - lower.to(positions.dtype)
    return lower, upper, offset


def linear_along_slices(lr: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of (B, C, n, W) at continuous slice positions -> (B, C, m, W)."""
    lower, upper, offset = neighbours(positions, lr.shape[2])
    w = offset.clamp(0, 1).to(lr.dtype).view(1, 1, -1, 1)
    return lr[:, :, lower, :] * (1 - w) + lr[:, :, upper, :] * w


class SliceINR(nn.Module):
    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        c, h = config.channels, config.hidden
        self.encoder = Encoder(1, c, config.blocks)
        self.decoder = nn.Sequential(
            nn.Conv2d(2 * c + 4, h, 1), nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 1), nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 1), nn.ReLU(inplace=True),
            nn.Conv2d(h, 1, 1),
        )

    def forward(self, lr: torch.Tensor, positions: torch.Tensor, factor: float,
                blur: float) -> torch.Tensor:
        """lr: (B, 1, n, W) thick slices; positions: (m,) in slab index units -> (B, 1, m, W).

        factor: slab spacing / output spacing; blur: slab thickness / slab spacing.
        """
        feats = self.encoder(lr)
        lower, upper, offset = neighbours(positions, lr.shape[2])
        b, _, _, w = lr.shape
        m = positions.shape[0]
        ones = torch.ones_like(offset)  # factor and blur may be tensors (ONNX inputs)
        cond = torch.stack([offset, 1 - offset, ones / factor, ones * blur], 0).to(feats.dtype)
        cond = cond.view(1, 4, m, 1).expand(b, 4, m, w)
        query = torch.cat([feats[:, :, lower, :], feats[:, :, upper, :], cond], 1)
        return linear_along_slices(lr, positions) + self.decoder(query)


class InterpCNN(nn.Module):
    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(1, config.channels, config.blocks)
        self.out = nn.Conv2d(config.channels, 1, 3, padding=1)

    def forward(self, lr: torch.Tensor, positions: torch.Tensor, factor: float,
                blur: float) -> torch.Tensor:
        base = linear_along_slices(lr, positions)
        return base + self.out(self.encoder(base))


def build_network(config: NetConfig) -> nn.Module:
    designs = {"inr": SliceINR, "cnn": InterpCNN}
    if config.design not in designs:
        raise ValueError(f"unknown network design {config.design!r}")
    return designs[config.design](config)
