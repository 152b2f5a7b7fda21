"""Slice profiles (degrade.py), their estimation (profile.py), metrics against hand-computed
values, continuous slice queries, and adaptation pairs built with the right profile."""
from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from intersr.methods.self_supervised import at_target_resolution, inplane_samplers
from intersr.acquisition.degrade import SliceProfile, degrade, profile_matrix, profile_values
from intersr.networks.infer import super_resolve
from intersr.acquisition.metrics import data_consistency_db, normaliser, psnr, quality, ssim_map
from intersr.acquisition.pairs import fine_positions
from intersr.acquisition import profile as profile_module
from intersr.acquisition.profile import choose_profiles, estimate_profile
from intersr.progress import Progress
from intersr.networks.weights import load_pretrained
from intersr.bench.cases import (BENCH_CROP, CASES, DEFAULT_DATA, crop_to_anatomy,
                                 prepared_reference, thick_case)
from intersr.volumes.read import to_volume


# ---------------------------------------------------------------- the profile family
@pytest.mark.parametrize("shape,tbw", [("gauss", 4.0), ("box", 4.0), ("sinc", 2.0),
                                       ("sinc", 4.0), ("sinc", 8.0)])
def test_each_shape_has_the_requested_fwhm(shape, tbw):
    x = np.linspace(-3, 3, 60001)
    values = profile_values(x, shape, 1.7, tbw)
    above = x[values >= 0.5]
    assert above.max() - above.min() == pytest.approx(1.7, rel=0.01)
    assert values.max() == pytest.approx(1.0, abs=0.02)


def test_box_rows_are_exact_slab_averages_and_gaps_leave_voxels_out():
    matrix = profile_matrix(40, 4.0, 4.0, "box")
    np.testing.assert_allclose(matrix[3, 12:16], 0.25, atol=1e-6)
    assert matrix[3, :12].sum() == 0 and matrix[3, 16:].sum() == 0
    gap = profile_matrix(40, 4.0, 2.0, "box")  # thickness 2 at spacing 4: half is never seen
    np.testing.assert_allclose(gap[3, 13:15], 0.5, atol=1e-6)
    assert np.count_nonzero(gap.sum(axis=0)) == 20


def test_sinc_profile_has_a_flat_top_and_small_ripples():
    x = np.linspace(-3, 3, 6001)
    values = profile_values(x, "sinc", 1.0, 8.0)
    assert values[np.abs(x) < 0.3].min() > 0.97  # flat top
    tails = values[np.abs(x) > 0.75]
    assert tails.min() < -1e-4 and np.abs(tails).max() < 0.02  # ripples, small


def test_shapes_differ_and_rows_sum_to_one():
    rows = {shape: profile_matrix(64, 4.0, 4.0, shape)[6] for shape in ("gauss", "box", "sinc")}
    for row in rows.values():
        assert row.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.abs(rows["gauss"] - rows["box"]).max() > 0.05
    assert np.abs(rows["sinc"] - rows["box"]).max() > 0.01


def test_unknown_shape_is_refused():
    with pytest.raises(ValueError, match="unknown slice profile shape"):
        profile_matrix(10, 2.0, 2.0, "lorentz")


# ---------------------------------------------------------------- estimation
@lru_cache(maxsize=2)
def blobs(n: int = 64, count: int = 160, seed: int = 0) -> np.ndarray:
    """An isotropic synthetic 'anatomy': overlapping balls of random intensity."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:n, :n, :n].astype(np.float32)
    volume = np.full((n, n, n), 0.5, np.float32)
    for _ in range(count):
        c, r = rng.uniform(0, n, 3), rng.uniform(2, 8)
        volume[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r] = rng.uniform(0.2, 1)
    volume.setflags(write=False)
    return volume


@pytest.mark.parametrize("shape,fwhm", [("gauss", 4.0), ("box", 4.0), ("gauss", 2.8)])
def test_estimator_recovers_fwhm_of_a_known_profile(shape, fwhm):
    thick = degrade(blobs(), 0, 4.0, fwhm, shape)
    estimate = estimate_profile(thick, (4.0, 1.0, 1.0), shapes=(shape,))
    assert estimate.profile.shape == shape
    assert estimate.profile.fwhm == pytest.approx(fwhm, rel=0.15)


def test_estimator_keeps_the_true_profile_among_the_plausible_ones():
    thick = degrade(blobs(), 0, 4.0, 4.0, "box")
    estimate = estimate_profile(thick, (4.0, 1.0, 1.0))
    boxes = [p for p in estimate.plausible if p.shape == "box"]
    assert boxes and boxes[0].fwhm == pytest.approx(4.0, rel=0.15)


@pytest.mark.parametrize("shape", ["gauss", "box"])
def test_estimator_uses_anatomy_that_does_not_fill_the_field_of_view(shape):
    """A ball of texture on a zero background: no run of 16 thick slices lies wholly inside
    it, as in a knee series of 14 slices. The segments that touch the anatomy still give the
    FWHM (an estimator that keeps only segments wholly inside finds none and gives up)."""
    n = blobs().shape[0]
    z, y, x = np.mgrid[:n, :n, :n]
    ball = ((z - (n - 1) / 2) ** 2 + (y - (n - 1) / 2) ** 2 + (x - (n - 1) / 2) ** 2) <= 30 ** 2
    thick = degrade(np.where(ball, blobs(), 0).astype(np.float32), 0, 4.0, 4.0, shape)
    estimate = estimate_profile(thick, (4.0, 1.0, 1.0), shapes=(shape,))
    assert estimate.profile.fwhm == pytest.approx(4.0, rel=0.15)


def test_a_best_fit_at_the_edge_of_the_range_is_not_trusted(monkeypatch):
    """When the loss keeps falling to the end of the FWHM range searched (here: box slices of
    FWHM 4 and a range that starts at 1.4 x the spacing), the best fit is no minimum. The run
    says so and falls back to the header's thickness (keeps it when the header states none);
    inside the range it is trusted."""
    thick = degrade(blobs(), 0, 4.0, 4.0, "box")
    ordinary = estimate_profile(thick, (4.0, 1.0, 1.0), shapes=("box",))
    assert not ordinary.at_edge
    monkeypatch.setattr(profile_module, "COARSE_RATIOS", np.array([1.4, 1.55]))
    edge = estimate_profile(thick, (4.0, 1.0, 1.0), shapes=("box",))
    assert edge.at_edge and edge.ratio == pytest.approx(1.3)
    messages = io.StringIO()
    profiles, how = choose_profiles(thick, (4.0, 1.0, 1.0), 3.0, "auto", None,
                                    Progress("none", log=messages))
    assert how == "fallback" and profiles == [SliceProfile("gauss", 3.0)]
    assert "edge of the range searched" in messages.getvalue()
    # no thickness in the header: the edge estimate is kept (a gap looks like this), and said
    messages = io.StringIO()
    profiles, how = choose_profiles(thick, (4.0, 1.0, 1.0), None, "auto", None,
                                    Progress("none", log=messages))
    assert how == "estimated" and profiles[0].fwhm == pytest.approx(edge.profile.fwhm)
    assert "kept, as the header states no thickness" in messages.getvalue()


def test_the_log_names_every_profile_adaptation_learns():
    """Box slices: other shapes at other FWHMs fit the thick slices almost as well (the data
    barely show a profile's shape, docs/benchmarks.md), so the run adapts to all of them and
    its log says which and why; with the shape forced there is one and no such clause."""
    thick = degrade(blobs(), 0, 4.0, 4.0, "box")
    messages = io.StringIO()
    profiles, how = choose_profiles(thick, (4.0, 1.0, 1.0), None, "auto", None,
                                    Progress("none", log=messages))
    assert how == "estimated" and len(profiles) > 1
    assert {p.shape for p in profiles} >= {"box"}
    log = messages.getvalue()
    assert all(p.describe() in log for p in profiles) and "almost as well" in log
    messages = io.StringIO()
    profiles, how = choose_profiles(thick, (4.0, 1.0, 1.0), None, "box", None,
                                    Progress("none", log=messages))
    assert how == "estimated" and len(profiles) == 1 and profiles[0].shape == "box"
    assert profiles[0].fwhm == pytest.approx(4.0, rel=0.15)
    assert "almost as well" not in messages.getvalue()


# ---------------------------------------------------------------- the effective width
def test_effective_width_is_the_gaussian_fwhm_with_the_same_half_modulation():
    """A Gaussian's is its FWHM; a box of width w has sinc(w f) = 1/2 at w f = 0.60335 where a
    Gaussian of FWHM F is at 1/2 at F f = 0.44127; windowed sincs lie between, nearer the box
    the flatter their top (higher time-bandwidth product)."""
    assert SliceProfile("gauss", 4.0).effective_width == pytest.approx(4.0, rel=1e-4)
    assert SliceProfile("box", 4.0).effective_width == pytest.approx(4 * 0.44127 / 0.60335,
                                                                     rel=1e-3)
    sincs = [SliceProfile("sinc", 4.0, tbw).effective_width for tbw in (2.0, 4.0, 8.0)]
    assert SliceProfile("box", 4.0).effective_width < sincs[2] < sincs[1] < sincs[0] < 4.0
    assert SliceProfile("box", 8.0).effective_width == pytest.approx(
        2 * SliceProfile("box", 4.0).effective_width)


MR_DATA = Path(os.environ.get("INTERSR_MR_DATA", Path(__file__).resolve().parents[1] / DEFAULT_DATA))
HELD_OUT_T1 = MR_DATA / "brain_t1_stroke_8bit.nii.gz"


@pytest.mark.skipif(not HELD_OUT_T1.exists(), reason="the bench's MR volumes are not here "
                    "(INTERSR_MR_DATA)")
@pytest.mark.parametrize("case_name", ["gauss_x4", "box_x4"])
def test_effective_width_of_simulated_thick_slices_of_a_real_scan(case_name):
    """Two of the estimator bench's cases (scripts/estimator_table.py) made with the degradation
    model from a held-out T1 (bench crop): the run's profile has the truth's effective width
    within 15 % and says it in its log, and the true profile is among those adaptation learns.
    (Box slices: the best fit was a Gaussian ~0.7 x as wide, FWHM -32 %, effective width -8 %.)"""
    case = next(c for c in CASES if c.name == case_name)
    reference, _ = crop_to_anatomy(sitk.ReadImage(str(HELD_OUT_T1), sitk.sitkFloat32), BENCH_CROP)
    reference = prepared_reference(reference, case)
    volume = to_volume(thick_case(reference, case), force=True, source=case.name)
    thick = normaliser(volume.array).apply(volume.array)
    spacing3 = (volume.geometry.slice_spacing, *volume.geometry.inplane_spacings)
    voxel = reference.GetSpacing()[case.axis]
    truth = SliceProfile(case.shape, case.fwhm * voxel, case.tbw)
    messages = io.StringIO()
    profiles, how = choose_profiles(thick, spacing3, case.header * voxel, "auto", None,
                                    Progress("none", log=messages))
    assert how == "estimated"
    assert profiles[0].effective_width == pytest.approx(truth.effective_width, rel=0.15)
    assert f"effective width {profiles[0].effective_width:.3g} mm" in messages.getvalue()
    assert any(p.shape == case.shape and p.effective_width == pytest.approx(
        truth.effective_width, rel=0.15) for p in profiles)


def test_estimator_refuses_too_few_slices():
    with pytest.raises(ValueError, match="too few"):
        estimate_profile(np.ones((4, 32, 32), np.float32), (4.0, 1.0, 1.0))


# ---------------------------------------------------------------- metrics by hand
def test_psnr_matches_hand_computed_values():
    ref = np.zeros((4, 4, 4), np.float32)
    est = np.full_like(ref, 0.1)  # MSE 0.01 on a [0, 1] scale -> 20 dB
    assert psnr(ref, est) == pytest.approx(20.0, abs=1e-6)
    mask = np.zeros(ref.shape, bool)
    mask[0] = True
    est[0] = 0.01  # MSE 1e-4 inside the mask -> 40 dB
    assert psnr(ref, est, mask) == pytest.approx(40.0, abs=1e-4)
    assert psnr(ref, ref) == float("inf")


def test_ssim_and_normalisation_by_hand(rng):
    ref = rng.random((12, 12, 12)).astype(np.float32)
    assert np.allclose(ssim_map(ref, ref), 1.0)
    # constant images with means a and b: SSIM = (2ab + c1) / (a^2 + b^2 + c1)
    a, b, c1 = 0.5, 0.25, 0.01 ** 2
    value = ssim_map(np.full((8, 8, 8), a), np.full((8, 8, 8), b))
    assert value.mean() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)
    ramp = np.arange(1000, dtype=np.float32)
    intensity = normaliser(ramp)
    assert intensity.low == pytest.approx(np.percentile(ramp, 0.5))
    assert intensity.high == pytest.approx(np.percentile(ramp, 99.5))
    scores = quality(ramp.reshape(10, 10, 10) * 2, ramp.reshape(10, 10, 10) * 2)
    assert scores["psnr_all"] == float("inf") and scores["ssim_all"] == pytest.approx(1.0)


def test_data_consistency_uses_the_profile_it_is_given(rng):
    fine = rng.random((64, 8, 8)).astype(np.float32)
    thick = degrade(fine, 0, 4.0, 4.0, "box")
    right = data_consistency_db(thick, fine, 4.0, 4.0, "box")
    wrong = data_consistency_db(thick, fine, 4.0, 4.0, "gauss")
    assert right > 100 and wrong < 40


# ---------------------------------------------------------------- continuous slice queries
def test_slices_between_slabs_are_not_copies_of_the_nearest_slab():
    """A ramp across slabs: every output slice within one slab interval takes its own value,
    increasing with position (copying the nearest slab would repeat values)."""
    model = load_pretrained().model
    n, k = 12, 4.0
    ramp = np.linspace(0.2, 0.8, n, dtype=np.float32)[:, None, None] * np.ones((1, 24, 24),
                                                                           np.float32)
    positions = fine_positions(int(n * k), k)
    out = super_resolve(model, ramp, positions, k, 1.0, torch.device("cpu"))
    centre = out[:, 12, 12]
    inner = centre[8:40]
    assert np.all(np.diff(inner) > 0)
    assert len(np.unique(np.round(inner, 5))) == len(inner)


# ---------------------------------------------------------------- adaptation pairs
def test_adaptation_pairs_follow_the_profile_and_factor(rng):
    volume = rng.random((24, 64, 64)).astype(np.float32)
    box = SliceProfile("box", 3.2)
    samplers = inplane_samplers(volume, (3.2, 0.8, 0.8), [box], np.arange(24))
    assert len(samplers) == 2
    for sampler in samplers:
        assert sampler.factor == pytest.approx(4.0)  # slice spacing / in-plane spacing
        batch = sampler.sample(2, rng, augment=False)
        fine = batch.fine[:, 0].numpy()
        right = np.stack([degrade(f, 0, 4.0, 4.0, "box") for f in fine])
        np.testing.assert_allclose(batch.thick[:, 0].numpy(), right, atol=1e-5)
        for factor, shape in ((3.0, "box"), (4.0, "gauss")):  # a wrong factor or profile
            wrong = np.stack([degrade(f, 0, factor, factor, shape) for f in fine])
            assert wrong.shape != right.shape or np.abs(wrong - right).max() > 1e-3


def test_coarser_requested_spacing_learns_at_that_resolution(rng):
    volume = rng.random((10, 60, 48)).astype(np.float32)
    profile = SliceProfile("sinc", 6.0)
    out, spacing = at_target_resolution(volume, (6.0, 0.5, 0.5), 1.5, profile)
    assert spacing == pytest.approx((6.0, 1.5, 1.5))
    assert out.shape == (10, 20, 16)
    same, kept = at_target_resolution(volume, (6.0, 0.5, 0.5), 0.5, profile)
    assert same is volume and kept == (6.0, 0.5, 0.5)
    # the pairs' own axis at the target spacing, the other at its own (as at inference, where
    # the thick slices keep their in-plane resolution)
    rows, cols = inplane_samplers(volume, (6.0, 0.5, 0.5), [profile], np.arange(10), 1.5)
    assert rows.view.shape[1:] == (20, 48) and cols.view.shape[1:] == (16, 60)
    assert rows.factor == pytest.approx(4.0) and cols.factor == pytest.approx(4.0)
    np.testing.assert_allclose(
        rows.view, at_target_resolution(volume, (6.0, 0.5, 0.5), 1.5, profile, axes=(1,))[0])


def test_a_much_coarser_inplane_axis_is_no_source_of_detail(rng):
    """A 2-D series made thick along an in-plane axis too (0.5 x 2.5 mm in-plane): pairs and
    the profile estimate come from the fine axis only, at its own factor."""
    from intersr.volumes.grid import fine_inplane_axes
    assert fine_inplane_axes((5.0, 0.5, 2.5)) == (1,)
    assert fine_inplane_axes((5.0, 2.5, 0.5)) == (2,)
    assert fine_inplane_axes((4.0, 1.0, 1.146)) == (1, 2)  # near-isotropic in-plane: both
    volume = rng.random((24, 240, 48)).astype(np.float32)
    samplers = inplane_samplers(volume, (5.0, 0.5, 2.5), [SliceProfile("box", 5.0)],
                                np.arange(24))
    assert len(samplers) == 1 and samplers[0].factor == pytest.approx(10.0)
    from scipy import ndimage
    reference = ndimage.gaussian_filter(rng.random((240, 240, 48)), 2.0).astype(np.float32)
    thick = degrade(reference, 0, 10.0, 10.0, "box")
    estimate = estimate_profile(normaliser(thick).apply(thick), (5.0, 0.5, 2.5))
    assert estimate.source_axes == (1,)


def test_cases_stated_in_mm_become_each_volumes_voxels():
    from intersr.bench.cases import SUBMM_CASES
    box = next(c for c in SUBMM_CASES if c.shape == "box")
    at_043 = box.in_voxels(0.43)
    assert (at_043.factor, at_043.fwhm, at_043.header, at_043.target) == (12.0, 12.0, 12.0, 3.0)
    at_0625 = box.in_voxels(0.625)
    assert (at_0625.factor, at_0625.target) == (8.0, 2.0)
    assert CASES[0].in_voxels(0.4) is CASES[0]  # stated in voxels: unchanged
