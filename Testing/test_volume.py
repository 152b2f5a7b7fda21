"""I/O and geometry: canonical round trips and the output-grid contract (to 1e-4 mm)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import oblique_direction, sample_crop
from intersr.cli import app as cli
from intersr.volumes.geometry import geometry_of, output_geometry, thick_slice_geometry, to_image
from intersr.volumes.grid import output_positions
from intersr.volumes.read import to_volume


def anisotropic(slice_axis: int, direction=None, spacing_slice=3.0) -> sitk.Image:
    array = sitk.GetArrayFromImage(sample_crop((20, 22, 24), (50, 50, 20)))
    image = sitk.GetImageFromArray(array.astype(np.float32))
    spacing = [0.9, 1.1, 1.0]
    spacing[slice_axis] = spacing_slice
    image.SetSpacing(spacing)
    image.SetOrigin((12.5, -30.25, 7.0))
    if direction is not None:
        image.SetDirection(direction)
    return image


def expected_centres(image: sitk.Image, axis: int, h: float, n_out: int) -> np.ndarray:
    """Physical centres of output slices by the contract: c_0 - s/2 + h/2 + j*h."""
    s = image.GetSpacing()[axis]
    d = np.asarray(image.GetDirection()).reshape(3, 3)[:, axis]
    c0 = np.asarray(image.GetOrigin())
    return np.array([c0 + d * (-s / 2 + h / 2 + j * h) for j in range(n_out)])


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("oblique", [False, True])
def test_canonical_round_trip(axis, oblique):
    image = anisotropic(axis, oblique_direction() if oblique else None)
    volume = to_volume(image)
    assert volume.geometry.slice_axis == axis
    assert volume.array.shape[0] == image.GetSize()[axis]
    back = to_image(volume.array, volume.geometry)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert back.GetSpacing() == image.GetSpacing()
    assert back.GetOrigin() == image.GetOrigin()
    assert back.GetDirection() == image.GetDirection()


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("oblique", [False, True])
@pytest.mark.parametrize("h", [1.0, 1.2, 0.75])  # factors 3, 2.5, 4
def test_output_grid_contract(axis, oblique, h):
    image = anisotropic(axis, oblique_direction() if oblique else None)
    geometry = output_geometry(geometry_of(image), h)
    n = image.GetSize()[axis]
    n_out = geometry.size[axis]
    assert n_out == round(n * 3.0 / h)
    grid = sitk.Image(list(geometry.size), sitk.sitkUInt8)
    grid.SetSpacing(geometry.spacing)
    grid.SetOrigin(geometry.origin)
    grid.SetDirection(geometry.direction)
    index = [0, 0, 0]
    got = []
    for j in range(n_out):
        index[axis] = j
        got.append(grid.TransformIndexToPhysicalPoint(index))
    np.testing.assert_allclose(got, expected_centres(image, axis, h, n_out), atol=1e-4)
    assert geometry.direction == image.GetDirection()
    for other in {0, 1, 2} - {axis}:
        assert geometry.spacing[other] == image.GetSpacing()[other]
        assert geometry.size[other] == image.GetSize()[other]


def test_output_positions_cover_field_of_view():
    t = output_positions(10, 2.5)
    assert len(t) == 25
    assert t[0] == pytest.approx(0.5 / 2.5 - 0.5)
    # first and last output slices sit symmetric inside the first and last slabs
    assert t[-1] == pytest.approx(9 + 0.5 - 0.5 / 2.5)


def test_thick_slice_geometry_inverts_output_geometry():
    fine = geometry_of(anisotropic(2, oblique_direction(), spacing_slice=1.0))
    thick = thick_slice_geometry(fine, 2, 4.0)
    back = output_geometry(thick, 1.0)
    np.testing.assert_allclose(back.origin, fine.origin, atol=1e-9)
    assert back.size[2] == 4 * thick.size[2]


@pytest.mark.parametrize("axis,suffix", [(0, ".nii.gz"), (1, ".mha"), (2, ".nrrd")])
def test_run_writes_contract_grid(tmp_path, axis, suffix):
    """End to end through `intersr run`: the written file's grid is the contract's (oblique)."""
    image = anisotropic(axis, oblique_direction())
    source = tmp_path / f"in{suffix}"
    sitk.WriteImage(image, str(source))
    target = tmp_path / f"out{suffix}"
    code = cli.main(["run", str(source), str(target), "--spacing", "1.2", "--no-adapt",
                     "--progress", "none"])
    assert code == 0
    out = sitk.ReadImage(str(target))
    n_out = out.GetSize()[axis]
    assert n_out == round(image.GetSize()[axis] * 3.0 / 1.2)
    index = [0, 0, 0]
    got = []
    for j in range(n_out):
        index[axis] = j
        got.append(out.TransformIndexToPhysicalPoint(index))
    np.testing.assert_allclose(got, expected_centres(image, axis, 1.2, n_out), atol=1e-4)
    np.testing.assert_allclose(out.GetDirection(), image.GetDirection(), atol=1e-6)
    assert [p for p in tmp_path.iterdir() if ".partial" in p.name] == []


def test_provenance_in_nrrd_header(tmp_path, small_volume):
    target = tmp_path / "iso.nrrd"
    assert cli.main(["run", str(small_volume), str(target), "--adapt-steps", "3",
                     "--progress", "none"]) == 0
    out = sitk.ReadImage(str(target))
    assert out.GetMetaData("intersr_adapt_steps") == "3"
    assert float(out.GetMetaData("intersr_factor")) == pytest.approx(1.5)
    assert "not acquired" in out.GetMetaData("intersr_note")
    assert out.HasMetaDataKey("intersr_weights_sha256")
    assert out.GetPixelIDValue() == sitk.ReadImage(str(small_volume)).GetPixelIDValue()


@pytest.mark.parametrize("axis", [0, 2])
def test_volume_owns_its_voxels(axis):
    """The canonical array must not alias the SimpleITK buffer (freed with the image)."""
    image = anisotropic(axis)
    expected = np.transpose(sitk.GetArrayFromImage(image), (2 - axis, *[a for a in (0, 1, 2) if a != 2 - axis]))
    volume = to_volume(image)
    assert volume.array.base is None or not np.shares_memory(
        volume.array, sitk.GetArrayViewFromImage(image))
    del image
    import gc
    gc.collect()
    _ = [np.full((64, 64, 64), 7.0, np.float32) for _ in range(4)]  # reuse freed memory
    np.testing.assert_array_equal(volume.array, expected)
