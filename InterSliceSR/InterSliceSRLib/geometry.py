"""Grid and memory numbers the module shows before a run (and the tests check after one).

Both come from the engine's torch-free core, so what is shown is what the engine does:
the grid rule is ``intersr.grid`` (slice axis, default spacing, output size and origin) and
the memory estimate is ``intersr.memory.required_bytes``, the very number the engine refuses
to run above.
"""
from __future__ import annotations

from dataclasses import dataclass

from intersr.volumes import grid as grid_rule
from intersr.runners import memory

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
    """
    g = grid_rule.plan(size, spacing, target_spacing=target_spacing or None, check=False)
    if directions is None:
        directions = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    column = [directions[r][g.slice_axis] for r in range(3)]
    return GridInfo(
        slice_axis=g.slice_axis,
        plane=plane_of(column),
        input_size=g.input_size,
        input_spacing=g.input_spacing,
        output_size=g.output_size,
        output_spacing=g.output_spacing,
        factor=g.factor,
        isotropic_input=grid_rule.is_isotropic(g.input_spacing),
        input_bytes=memory.voxels(g.input_size) * int(bytes_per_voxel),
        estimated_memory_bytes=memory.required_bytes(g),
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
    the new spacing and the origin moves along it by ``grid.origin_shift``.
    """
    g = grid_rule.plan((1, 1, 1), spacing, target_spacing=target_spacing or None, check=False)
    axis, s, h = g.slice_axis, g.slice_spacing, g.output_spacing_mm
    m = [[float(ijk_to_ras[r][c]) for c in range(4)] for r in range(4)]
    unit = [m[r][axis] / s for r in range(3)]
    for r in range(3):
        m[r][axis] = unit[r] * h
        m[r][3] += unit[r] * grid_rule.origin_shift(s, h)
    return m
