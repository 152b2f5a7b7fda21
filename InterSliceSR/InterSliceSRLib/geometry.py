"""Grid arithmetic the module shows before a run (and the tests check after one).

It follows the engine contract (docs: DESIGN.md "Output grid") with the engine's own helpers
(`intersr.volume`, which imports no torch): the slice axis is the IJK axis with the largest
spacing (ties: the highest axis), the output
spacing along it is ``h`` (default: the finest in-plane spacing), the output has
``n_out = round(n * s / h)`` slices and the first one is centred at ``c_0 - s/2 + h/2``.
"""
from __future__ import annotations

from dataclasses import dataclass

# The engine's own grid rules (intersr.volume needs only numpy and SimpleITK, both bundled with
# Slicer), so the numbers shown before a run are the ones the engine will use.
from intersr.volume import ISOTROPY_TOLERANCE, find_slice_axis as slice_axis_of, output_slice_count

_AXIS_NAMES = ("I", "J", "K")
_PLANE_BY_RAS_AXIS = ("sagittal", "coronal", "axial")


@dataclass(frozen=True)
class GridInfo:
    slice_axis: int                 # 0, 1, 2 for I, J, K
    plane: str                      # "axial", "coronal", "sagittal" (dominant direction)
    input_size: tuple
    input_spacing: tuple
    output_size: tuple
    output_spacing: tuple
    factor: float
    isotropic_input: bool
    input_bytes: int
    estimated_memory_bytes: int

    @property
    def slice_axis_name(self) -> str:
        return _AXIS_NAMES[self.slice_axis]

    def summary(self) -> dict:
        return {
            "slice_axis": f"{self.slice_axis_name} ({self.plane})",
            "input": f"{_fmt_size(self.input_size)} voxels, {_fmt_spacing(self.input_spacing)} mm",
            "output": f"{_fmt_size(self.output_size)} voxels, {_fmt_spacing(self.output_spacing)} mm"
                      f" (x{self.factor:.3g} along {self.slice_axis_name})",
            "memory": format_bytes(self.estimated_memory_bytes),
        }


def _fmt_size(size) -> str:
    return " x ".join(str(int(n)) for n in size)


def _fmt_spacing(spacing) -> str:
    return " x ".join(f"{s:.4g}" for s in spacing)


def format_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def plane_of(direction_column) -> str:
    """Anatomical plane whose normal is closest to the given RAS direction (the slice axis)."""
    magnitudes = [abs(float(c)) for c in direction_column]
    return _PLANE_BY_RAS_AXIS[magnitudes.index(max(magnitudes))]


def describe_grid(size, spacing, directions=None, target_spacing: float = 0.0,
                  bytes_per_voxel: int = 2) -> GridInfo:
    """Describe input and output grids and the memory a run needs.

    ``directions`` is a 3x3 IJK-to-RAS direction matrix (rows = RAS, columns = IJK axes);
    ``target_spacing`` 0 means isotropic (the finest in-plane spacing).
    Memory estimate: output voxels x 4 bytes (float32) x 3 working copies + the input.
    """
    size = tuple(int(n) for n in size)
    spacing = tuple(float(s) for s in spacing)
    axis = slice_axis_of(spacing)
    inplane = [spacing[i] for i in range(3) if i != axis]
    h = float(target_spacing) if target_spacing and target_spacing > 0 else min(inplane)
    s = spacing[axis]
    factor = s / h
    out_size = list(size)
    out_size[axis] = output_slice_count(size[axis], factor)
    out_spacing = list(spacing)
    out_spacing[axis] = h
    if directions is None:
        directions = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    column = [directions[r][axis] for r in range(3)]
    n_in = size[0] * size[1] * size[2]
    n_out = out_size[0] * out_size[1] * out_size[2]
    input_bytes = n_in * int(bytes_per_voxel)
    return GridInfo(
        slice_axis=axis,
        plane=plane_of(column),
        input_size=size,
        input_spacing=spacing,
        output_size=tuple(out_size),
        output_spacing=tuple(out_spacing),
        factor=factor,
        isotropic_input=max(spacing) / min(spacing) < ISOTROPY_TOLERANCE,
        input_bytes=input_bytes,
        estimated_memory_bytes=n_out * 4 * 3 + input_bytes,
    )


def describe_volume_node(volumeNode, target_spacing: float = 0.0) -> GridInfo | None:
    """``describe_grid`` for a vtkMRMLScalarVolumeNode (None when it has no image data)."""
    if volumeNode is None or volumeNode.GetImageData() is None:
        return None
    image = volumeNode.GetImageData()
    dims = image.GetDimensions()
    import vtk

    m = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASDirectionMatrix(m)
    directions = [[m.GetElement(r, c) for c in range(3)] for r in range(3)]
    bytes_per_voxel = image.GetScalarSize() * image.GetNumberOfScalarComponents()
    return describe_grid(dims, volumeNode.GetSpacing(), directions, target_spacing, bytes_per_voxel)


def expected_output_ijk_to_ras(ijk_to_ras, spacing, target_spacing: float = 0.0):
    """The output IJK-to-RAS matrix (4x4 nested lists) the contract prescribes.

    Columns of the input's IJK-to-RAS are direction x spacing; the slice column is rescaled to
    the new spacing and the origin moves along it by ``-s/2 + h/2``.
    """
    spacing = tuple(float(s) for s in spacing)
    axis = slice_axis_of(spacing)
    inplane = [spacing[i] for i in range(3) if i != axis]
    h = float(target_spacing) if target_spacing and target_spacing > 0 else min(inplane)
    s = spacing[axis]
    m = [[float(ijk_to_ras[r][c]) for c in range(4)] for r in range(4)]
    unit = [m[r][axis] / s for r in range(3)]
    for r in range(3):
        m[r][axis] = unit[r] * h
        m[r][3] += unit[r] * (-s / 2 + h / 2)
    return m
