"""Training pairs: fine 2-D patches and their thick-slice versions from the degradation model.

Used by self-supervised adaptation (an in-plane axis of the target volume degraded to the
slice spacing) and by MR pre-training (any axis of a near-isotropic volume), so both learn
exactly the mapping that inference applies across slices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .degrade import DEFAULT_TBW, profile_matrix


@dataclass
class PairBatch:
    thick: torch.Tensor  # (B, 1, n, W)
    fine: torch.Tensor  # (B, 1, L, W)
    positions: torch.Tensor  # (L,) fine-voxel centres in slab index units
    factor: float
    blur: float  # slab thickness / slab spacing


def fine_positions(n_fine: int, factor: float) -> np.ndarray:
    """Fine voxel centres in slab index units (slab i is centred on fine (i + 1/2) k - 1/2)."""
    return (np.arange(n_fine, dtype=np.float64) + 0.5) / factor - 0.5


class PlanePairs:
    """Random patches of a normalised 3-D array, degraded along `axis` within planes (axis, other).

    factor and fwhm are in voxels of `axis`, shape/tbw the slice profile (degrade.py);
    `fixed` lists the indices allowed along the third axis (so held-out slices stay out of
    training).
    """

    def __init__(self, array: np.ndarray, axis: int, other: int, factor: float, fwhm: float,
                 fixed: np.ndarray | None = None, slabs: int = 16, width: int = 64,
                 min_mean: float = 0.05, shape: str = "gauss", tbw: float = DEFAULT_TBW):
        third = 3 - axis - other
        self.other = other  # the axis the planes lie beside, as inference's planes do
        self.view = np.moveaxis(array, (third, axis, other), (0, 1, 2))
        dim_axis, dim_other = self.view.shape[1], self.view.shape[2]
        self.factor = float(factor)
        self.blur = float(fwhm) / self.factor
        slabs = max(2, min(slabs, int(np.floor(dim_axis / self.factor + 1e-6))))
        self.length = int(np.floor(slabs * self.factor + 1e-6))
        if self.length > dim_axis or slabs < 2:
            raise ValueError(f"axis of {dim_axis} voxels is too short for factor {factor:.2f}")
        self.width = min(width, dim_other)
        self.fixed = np.arange(self.view.shape[0]) if fixed is None else np.asarray(fixed)
        self.matrix = torch.from_numpy(
            np.ascontiguousarray(profile_matrix(self.length, self.factor, fwhm, shape, tbw), np.float32))
        self.shape, self.tbw, self.fwhm = shape, float(tbw), float(fwhm)
        self.positions = torch.from_numpy(fine_positions(self.length, self.factor).astype(np.float32))
        self.min_mean = min_mean

    def sample(self, batch: int, rng: np.random.Generator, augment: bool = True) -> PairBatch:
        patches = np.empty((batch, self.length, self.width), np.float32)
        dim_axis, dim_other = self.view.shape[1], self.view.shape[2]
        for b in range(batch):
            for _ in range(20):  # prefer patches with anatomy in them
                k = self.fixed[rng.integers(len(self.fixed))]
                i = rng.integers(dim_axis - self.length + 1)
                j = rng.integers(dim_other - self.width + 1)
                patch = self.view[k, i:i + self.length, j:j + self.width]
                if patch.mean() > self.min_mean:
                    break
            if augment:
                if rng.random() < 0.5:
                    patch = patch[::-1]
                if rng.random() < 0.5:
                    patch = patch[:, ::-1]
            patches[b] = patch
        fine = torch.from_numpy(patches).unsqueeze(1)
        thick = torch.einsum("nl,bclw->bcnw", self.matrix, fine)
        return PairBatch(thick=thick, fine=fine, positions=self.positions,
                         factor=self.factor, blur=self.blur)
