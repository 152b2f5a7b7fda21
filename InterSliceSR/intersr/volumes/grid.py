"""The output-grid rule, once (torch-free: numpy only).

DESIGN.md's contract: the slice axis is the axis with the largest spacing (ties: the highest
axis); input slab i covers [c_i - s/2, c_i + s/2]; the output samples that span at spacing h
(default: the finest in-plane spacing), the first sample centred at c_0 - s/2 + h/2.

How many output slices: an output slice exists when its centre lies strictly inside the
input's field of view, i.e. j + 1/2 < n*k for k = s/h. A centre exactly on the edge
(n*k + 1/2 a whole number, e.g. 7 slices at x2.5 -> 17.5) would sample a slab that is half
outside the data, so it is left out: 7 slices at x2.5 give 17 output slices, not 18.
The engine, the Slicer module's display and the benchmark's oracle all call this module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..options import MAX_FACTOR

ISOTROPY_TOLERANCE = 1.2  # max/min spacing below this counts as already isotropic
_EDGE = 1e-6  # centres within this many output slices of the edge count as on it


def find_slice_axis(spacing: Sequence[float]) -> int:
    """The axis with the largest spacing; ties go to the highest axis (usually z)."""
    largest = max(spacing)
    return max(i for i, s in enumerate(spacing) if s >= largest * (1 - 1e-6))


def is_isotropic(spacing: Sequence[float]) -> bool:
    return max(spacing) / min(spacing) < ISOTROPY_TOLERANCE


FINE_INPLANE_TOLERANCE = 1.5  # an in-plane axis coarser than this x the finest is itself thick


def fine_inplane_axes(spacing3: Sequence[float]) -> tuple[int, ...]:
    """The canonical in-plane axes (1 rows, 2 cols) that carry the finest detail.

    spacing3: (slice, row, col) in mm. When one in-plane axis is much coarser than the other
    (a 2-D series made thick along an in-plane axis too, e.g. 0.5 x 7.5 mm), it is itself a
    thick-slice axis blurred by its own profile: as a source of sharp detail (the profile
    estimate, adaptation's pairs) it would teach the network, and the estimator, that thick
    slices look sharper than they are.
    """
    finest = min(spacing3[1], spacing3[2])
    return tuple(a for a in (1, 2) if spacing3[a] <= FINE_INPLANE_TOLERANCE * finest)


def inplane_spacings(spacing: Sequence[float], axis: int) -> list[float]:
    return [float(spacing[i]) for i in range(len(spacing)) if i != axis]


def output_slice_count(n_slices: int, factor: float) -> int:
    """Output slices whose centres lie strictly inside the field of view of n slabs."""
    return max(1, int(math.ceil(n_slices * factor - 0.5 - _EDGE)))


def output_positions(n_slices: int, factor: float) -> np.ndarray:
    """Centres of the output slices in input-slice index units (slab i is centred on i)."""
    j = np.arange(output_slice_count(n_slices, factor), dtype=np.float64)
    return (j + 0.5) / factor - 0.5


def origin_shift(slice_spacing: float, new_spacing: float) -> float:
    """How far (mm, along the slice direction) the first output centre is from the first input
    centre: c_0 - s/2 + h/2."""
    return -slice_spacing / 2 + new_spacing / 2


@dataclass(frozen=True)
class Grid:
    """The output grid of one run, in ITK axis order."""

    slice_axis: int
    input_size: tuple[int, ...]
    input_spacing: tuple[float, ...]
    output_spacing_mm: float  # h, along the slice axis
    factor: float  # s / h

    @property
    def slice_spacing(self) -> float:
        return self.input_spacing[self.slice_axis]

    @property
    def n_in(self) -> int:
        return self.input_size[self.slice_axis]

    @property
    def n_out(self) -> int:
        return output_slice_count(self.n_in, self.factor)

    @property
    def output_size(self) -> tuple[int, ...]:
        size = list(self.input_size)
        size[self.slice_axis] = self.n_out
        return tuple(size)

    @property
    def output_spacing(self) -> tuple[float, ...]:
        spacing = list(self.input_spacing)
        spacing[self.slice_axis] = self.output_spacing_mm
        return tuple(spacing)

    @property
    def shift_mm(self) -> float:
        return origin_shift(self.slice_spacing, self.output_spacing_mm)

    def positions(self) -> np.ndarray:
        return output_positions(self.n_in, self.factor)

    def output_origin(self, origin: Sequence[float], direction: Sequence[float]) -> tuple:
        """Output origin for a row-major 3x3 direction (columns = index axes)."""
        column = np.asarray(direction, dtype=np.float64).reshape(3, 3)[:, self.slice_axis]
        return tuple(float(o) for o in np.asarray(origin, np.float64) + column * self.shift_mm)


def plan(size: Sequence[int], spacing: Sequence[float], *, target_spacing: Optional[float] = None,
         factor: Optional[float] = None, slice_axis: Optional[int] = None,
         check: bool = True) -> Grid:
    """The output grid for an input of `size` and `spacing` (ITK order).

    check=True refuses what the engine refuses (InputError with the reason); check=False
    describes the grid anyway (the GUI shows it and disables Apply).
    """
    size = tuple(int(n) for n in size)
    spacing = tuple(float(v) for v in spacing)
    axis = find_slice_axis(spacing) if slice_axis is None else slice_axis
    s = spacing[axis]
    target_spacing = target_spacing or None  # 0 means automatic
    if target_spacing is not None and factor is not None:
        raise InputError("give --spacing or --factor, not both")
    if factor is not None:
        if check and (not math.isfinite(factor) or factor < 1):
            raise InputError(f"--factor must be >= 1 (got {factor}); InterSliceSR only makes "
                             "slices thinner")
        h = s / factor
    elif target_spacing is not None:
        if check and (not math.isfinite(target_spacing) or target_spacing <= 0):
            raise InputError(f"--spacing must be a positive number of mm (got {target_spacing})")
        if check and target_spacing > s * (1 + 1e-6):
            raise InputError(f"--spacing {target_spacing} mm is coarser than the slice spacing "
                             f"{s:.4g} mm (factor below 1); InterSliceSR only makes slices "
                             "thinner")
        h = target_spacing
    else:
        if check and is_isotropic(spacing):
            raise InputError("input is already isotropic (spacing "
                             + " x ".join(f"{v:.4g}" for v in spacing)
                             + " mm); nothing to do (give --factor or --spacing to force "
                             "thinner slices)")
        h = min(inplane_spacings(spacing, axis))
    k = s / h
    if check and k > MAX_FACTOR * (1 + 1e-9):
        raise InputError(f"factor {k:.3g} is beyond what the network supports "
                         f"(<= {MAX_FACTOR:g})")
    return Grid(slice_axis=axis, input_size=size, input_spacing=spacing, output_spacing_mm=h,
                factor=k)
