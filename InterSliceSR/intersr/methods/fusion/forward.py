"""The SRR forward model A_k (output volume -> stack k's slabs) and its exact adjoint A_k^T.

A_k = profile (through-plane, dense small matrix) o in-plane PSF (separable Gaussian) o
trilinear resampling through the rigid transform onto a stack-aligned fine grid (sparse
matrix). Every factor has an exact transpose, so <A x, y> == <x, A^T y> up to float rounding,
which conjugate gradients needs. Slab samples whose support leaves the output field of view
get weight 0 in `valid` (A cannot predict them; fitting them would drag the edges).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import SimpleITK as sitk
from scipy import ndimage

from ...acquisition.degrade import profile_matrix
from .stacks import Stack, corners

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass(frozen=True)
class Grid:
    """A 3-D sampling grid in ITK order: size, spacing, origin and direction (3x3 columns)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # row-major 3x3, as SimpleITK

    @property
    def shape(self) -> tuple[int, int, int]:
        """numpy (z, y, x) shape."""
        return tuple(reversed(self.size))

    def matrix(self) -> np.ndarray:
        return np.asarray(self.direction, float).reshape(3, 3)

    def image(self, array: np.ndarray | None = None) -> sitk.Image:
        data = np.zeros(self.shape, np.float32) if array is None else array
        img = sitk.GetImageFromArray(np.ascontiguousarray(data, dtype=np.float32))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    @staticmethod
    def of(image: sitk.Image) -> "Grid":
        return Grid(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                    tuple(image.GetDirection()))


def affine_of(transform: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with transform(p) = A p + b, read off by evaluating the (affine) transform."""
    b = np.asarray(transform.TransformPoint((0.0, 0.0, 0.0)))
    a = np.stack([np.asarray(transform.TransformPoint(tuple(e))) - b for e in np.eye(3)], 1)
    return a, b


def output_grid(reference: Stack, spacing: float | None = None, fov: str = "reference",
                stacks: list[Stack] | None = None,
                transforms: list[sitk.Transform] | None = None) -> Grid:
    """Isotropic grid in the reference's frame: its field of view, or the union of all stacks.

    Why the reference frame: the result overlays the reference series in a viewer.
    """
    s = float(spacing or reference.inplane_spacing)
    d = np.asarray(reference.image.GetDirection(), float).reshape(3, 3)
    origin = np.asarray(reference.image.GetOrigin(), float)
    pts = corners(reference.image)
    if fov == "union":
        for stack, t in zip(stacks or [], transforms or []):
            inv = t.GetInverse()
            pts = np.vstack([pts, [inv.TransformPoint(tuple(c)) for c in corners(stack.image)]])
    elif fov != "reference":
        raise ValueError(f"fov must be 'reference' or 'union', got {fov!r}")
    local = (pts - origin) @ d  # coordinates along the reference axes
    low, high = local.min(0), local.max(0)
    size = np.maximum(1, np.round((high - low) / s - 1e-6)).astype(int)
    start = low + 0.5 * ((high - low) - size * s) + s / 2  # centred on the field of view
    return Grid(tuple(int(n) for n in size), (s, s, s), tuple(origin + d @ start),
                tuple(d.ravel()))


def fine_grid(stack: Stack, spacing: float) -> tuple[Grid, int]:
    """Stack-aligned grid: in-plane as the stack, slice axis refined m-fold (h = S/m <= s)."""
    axis = stack.slice_axis
    big = stack.slice_spacing
    m = max(1, int(math.ceil(big / spacing - 1e-6)))
    h = big / m
    size = list(stack.image.GetSize())
    size[axis] *= m
    sp_ = list(stack.image.GetSpacing())
    sp_[axis] = h
    d = np.asarray(stack.image.GetDirection(), float).reshape(3, 3)
    origin = np.asarray(stack.image.GetOrigin()) + d[:, axis] * (-big / 2 + h / 2)
    return Grid(tuple(size), tuple(sp_), tuple(origin), stack.image.GetDirection()), m


def interpolation_matrix(src: Grid, dst: Grid, transform: sitk.Transform | None) -> sp.csr_matrix:
    """Sparse trilinear interpolation of `dst`-grid voxels at the `src` points (rows).

    `transform` maps destination (reference) points into the source stack's space, as ITK
    registration returns; the source points are pulled back through its inverse.
    """
    a_idx = src.matrix() * np.asarray(src.spacing)  # index -> physical
    if transform is not None:
        ai, bi = affine_of(transform.GetInverse())
    else:
        ai, bi = np.eye(3), np.zeros(3)
    to_dst = dst.matrix().T / np.asarray(dst.spacing)[:, None]  # physical -> dst index
    lin = to_dst @ ai @ a_idx
    off = to_dst @ (ai @ np.asarray(src.origin) + bi - np.asarray(dst.origin))
    nx, ny, nz = src.size
    dx, dy, dz = dst.size
    n_rows = nx * ny * nz
    indices = np.empty(n_rows * 8, np.int32)
    data = np.empty(n_rows * 8, np.float32)
    ii, jj = np.meshgrid(np.arange(nx, dtype=np.float64), np.arange(ny, dtype=np.float64),
                         indexing="xy")  # (ny, nx)
    plane = nx * ny
    for k in range(nz):  # one src slice at a time bounds the temporary memory
        u = (lin[:, 0, None, None] * ii + lin[:, 1, None, None] * jj
             + (lin[:, 2] * k + off)[:, None, None]).reshape(3, -1)
        f = np.floor(u)
        frac = (u - f).astype(np.float32)
        f = f.astype(np.int64)
        rows = slice(k * plane * 8, (k + 1) * plane * 8)
        idx_block = np.empty((plane, 8), np.int64)
        w_block = np.empty((plane, 8), np.float32)
        c = 0
        for oz in (0, 1):
            for oy in (0, 1):
                for ox in (0, 1):
                    x, y, z = f[0] + ox, f[1] + oy, f[2] + oz
                    w = ((frac[0] if ox else 1 - frac[0]) * (frac[1] if oy else 1 - frac[1])
                         * (frac[2] if oz else 1 - frac[2]))
                    ok = (x >= 0) & (x < dx) & (y >= 0) & (y < dy) & (z >= 0) & (z < dz)
                    idx_block[:, c] = np.where(ok, (z * dy + y) * dx + x, 0)
                    w_block[:, c] = np.where(ok, w, 0.0)
                    c += 1
        indices[rows] = idx_block.ravel()
        data[rows] = w_block.ravel()
    indptr = np.arange(0, n_rows * 8 + 1, 8, dtype=np.int64)
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, dx * dy * dz))


class StackOperator:
    """A_k for one stack: `forward` (output vector -> slab array) and `adjoint` (exact A^T)."""

    def __init__(self, stack: Stack, out: Grid, transform: sitk.Transform | None,
                 inplane_fwhm: float = 0.0, tbw: float = 4.0):
        self.stack = stack
        self.out = out
        grid, m = fine_grid(stack, out.spacing[0])
        self.fine = grid
        self.m = m
        self.interp = interpolation_matrix(grid, out, transform)
        self.interp_t = self.interp.T.tocsr()  # explicit transpose: a fast row-wise adjoint
        self.axis = 2 - stack.slice_axis  # numpy axis of the slices
        n_fine = grid.shape[self.axis]
        fwhm_fine = stack.thickness / (stack.slice_spacing / m)
        self.profile = profile_matrix(n_fine, float(m), fwhm_fine, stack.profile,
                                      tbw).astype(np.float32)
        self.sigma = [0.0 if a == self.axis else inplane_fwhm * FWHM_TO_SIGMA for a in range(3)]
        self.shape = stack.image.GetSize()[::-1]
        coverage = self.forward(np.ones(out.shape, np.float32).ravel())
        self.valid = (coverage > 0.99).astype(np.float32)  # slab fully inside the output FOV

    def _psf(self, a: np.ndarray) -> np.ndarray:
        if max(self.sigma) == 0:
            return a
        return ndimage.gaussian_filter(a, self.sigma, mode="constant", truncate=3.0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        fine = (self.interp @ x.ravel()).reshape(self.fine.shape)
        fine = self._psf(fine)
        out = np.tensordot(self.profile, np.moveaxis(fine, self.axis, 0), axes=(1, 0))
        return np.ascontiguousarray(np.moveaxis(out, 0, self.axis))

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        moved = np.tensordot(self.profile.T, np.moveaxis(y, self.axis, 0), axes=(1, 0))
        fine = np.ascontiguousarray(np.moveaxis(moved, 0, self.axis))
        fine = self._psf(fine)
        return self.interp_t @ fine.ravel()

    def nbytes(self) -> int:
        return sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
                   for m in (self.interp, self.interp_t))
