"""The degradation model: a normalised Gaussian slice profile at slab centres, any factor."""
from __future__ import annotations

import numpy as np
import pytest

from intersr.acquisition.degrade import FWHM_TO_SIGMA, degrade, profile_matrix, slab_count


@pytest.mark.parametrize("factor,fwhm", [(2.0, 2.0), (2.5, 2.5), (4.0, 4.0), (5.0, 4.0), (6.6, 6.6)])
def test_rows_are_normalised_profiles_centred_on_slabs(factor, fwhm):
    n = 80
    matrix = profile_matrix(n, factor, fwhm)
    assert matrix.shape == (slab_count(n, factor), n)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    j = np.arange(n)
    for i in range(2, matrix.shape[0] - 2):  # away from the edges
        centre = (i + 0.5) * factor - 0.5
        weights = matrix[i]
        mean = (weights * j).sum()
        assert mean == pytest.approx(centre, abs=1e-4)
        variance = (weights * (j - mean) ** 2).sum()
        # Gaussian convolved with the unit box of each fine voxel: sigma^2 + 1/12
        assert variance == pytest.approx((fwhm * FWHM_TO_SIGMA) ** 2 + 1 / 12, rel=0.02)


def test_ramp_is_sampled_at_slab_centres_for_non_integer_factor():
    ramp = np.arange(100, dtype=np.float32)[:, None, None] * np.ones((1, 3, 4), np.float32)
    thick = degrade(ramp, 0, 2.5, 2.5)
    centres = (np.arange(thick.shape[0]) + 0.5) * 2.5 - 0.5
    inner = slice(2, -2)
    np.testing.assert_allclose(thick[inner, 0, 0], centres[inner], atol=1e-3)


def test_thin_profile_integer_factor_is_box_average():
    data = np.arange(12, dtype=np.float32)
    thick = degrade(data[:, None], 0, 3.0, 1e-6)[:, 0]
    # odd factor, vanishing thickness: slab i is exactly fine voxel 3i + 1
    np.testing.assert_allclose(thick, data[1::3], atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_degrade_along_each_axis_keeps_other_axes(axis, rng):
    volume = rng.random((24, 20, 16)).astype(np.float32)
    thick = degrade(volume, axis, 4.0, 4.0)
    expected = list(volume.shape)
    expected[axis] = slab_count(volume.shape[axis], 4.0)
    assert list(thick.shape) == expected
    assert thick.mean() == pytest.approx(volume.mean(), rel=0.05)
    assert thick.std() < volume.std()  # the profile blurs


def test_factor_below_one_is_refused():
    with pytest.raises(ValueError, match="factor"):
        profile_matrix(10, 0.5, 1.0)
