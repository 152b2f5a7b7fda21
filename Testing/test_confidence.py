"""The confidence map (`intersr run --confidence`): beside the output, same grid, its own
provenance, low at acquired slab centres, never written over the result, and it tracks the
true error on a simulated case."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.stats import spearmanr

from conftest import sample_crop
from intersr import options, protocol
from intersr.acquisition.metrics import foreground_mask, normalise, normaliser
from intersr.bench.cases import Case, thick_case
from intersr.errors import InputError
from intersr.methods import confidence
from intersr.networks.infer import super_resolve
from intersr.runners import pipeline
from intersr.volumes.grid import output_positions
from intersr.volumes.read import to_volume


def run_with_map(small_volume, tmp_path, **extra):
    out, conf = tmp_path / "out.nrrd", tmp_path / "out_confidence.nrrd"
    result = pipeline.run(str(small_volume), str(out),
                          options.make(no_adapt=True, confidence=str(conf), **extra))
    return result, out, conf


def test_map_beside_the_output_same_grid_provenance_and_lower_at_slab_centres(small_volume,
                                                                              tmp_path):
    result, out, conf = run_with_map(small_volume, tmp_path)
    image, cmap = sitk.ReadImage(str(out)), sitk.ReadImage(str(conf))
    assert cmap.GetSize() == image.GetSize() == (48, 48, 21)
    np.testing.assert_allclose(cmap.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(cmap.GetOrigin(), image.GetOrigin())
    np.testing.assert_allclose(cmap.GetDirection(), image.GetDirection())
    assert cmap.GetPixelID() == sitk.sitkFloat32
    values = sitk.GetArrayFromImage(cmap)  # (z, y, x): z is the slice axis
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() < 1
    # the output unchanged by asking for the map; the map is not the output
    assert not np.array_equal(values, sitk.GetArrayFromImage(image))
    # provenance: every key of the result, the same values, plus what the map is
    keys = [k for k in image.GetMetaDataKeys() if k.startswith(protocol.PROVENANCE_PREFIX)]
    assert "intersr_map" not in keys and len(keys) > 10
    for key in keys:
        assert cmap.GetMetaData(key) == image.GetMetaData(key), key
    assert "expected absolute error" in cmap.GetMetaData("intersr_map")
    assert "seen volumes" in cmap.GetMetaData("intersr_map")
    # no --confidence in the result's recorded options (it does not shape the output)
    assert "confidence" not in image.GetMetaData("intersr_options")
    distance = confidence.slab_distance(output_positions(14, result.factor))
    centre, between = distance < confidence.CENTRE, distance >= confidence.CENTRE
    assert centre.any() and between.any()
    fg = foreground_mask(normaliser(values).apply(sitk.GetArrayFromImage(image)))
    means = [values[sel][fg[sel]].mean() for sel in (centre, between)]
    assert means[0] < means[1], means
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nrrd", "out_confidence.nrrd",
                                                          "small.nrrd"]


@pytest.mark.parametrize("target", ["output", "input"])
def test_confidence_path_equal_to_output_or_input_is_refused_before_any_work(small_volume,
                                                                              tmp_path, target):
    out = tmp_path / "out.nrrd"
    conf = out if target == "output" else small_volume
    before = small_volume.read_bytes()
    with pytest.raises(InputError, match="--confidence .* is (OUTPUT|INPUT)"):
        pipeline.run(str(small_volume), str(out),
                     options.make(no_adapt=True, confidence=str(conf)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.nrrd"]
    assert small_volume.read_bytes() == before


def test_a_failed_map_write_leaves_nothing(small_volume, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk gone")
    monkeypatch.setattr(pipeline, "write_confidence", fail)
    with pytest.raises(OSError):
        run_with_map(small_volume, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.nrrd"]


def test_flag_on_run_not_on_batch_and_not_sent_by_engine_args():
    from intersr.cli.app import build_parser
    args = build_parser().parse_args(["run", "in.nrrd", "out.nrrd", "--confidence", "c.nrrd"])
    run_options = options.from_namespace(args)
    assert run_options.confidence == "c.nrrd"
    assert "--confidence" not in options.engine_args(run_options)  # not in provenance / batch
    from intersr.cli.app import UsageError
    with pytest.raises(UsageError, match="unrecognized arguments: --confidence"):
        build_parser().parse_args(["batch", "in", "outdir", "--confidence", "c.nrrd"])


def test_spread_costs_no_change_in_the_output():
    """`super_resolve(spread=True)` returns the same average and |row pass - col pass|."""
    crop = sitk.GetArrayFromImage(sample_crop((24, 24, 8))).astype(np.float32)
    x = normaliser(crop).apply(crop)
    backend, _ = pipeline.shipped_ort_backend(options.make(no_adapt=True))
    positions = output_positions(len(x), 1.5)
    plain = super_resolve(backend, x, positions, 1.5, 1.0)
    mean, spread = super_resolve(backend, x, positions, 1.5, 1.0, spread=True)
    np.testing.assert_allclose(mean, plain, atol=1e-6)
    assert spread.shape == plain.shape and spread.min() >= 0 and spread.max() > 0


def test_map_tracks_the_true_error_on_a_simulated_case():
    """x4 along an in-plane axis of the real sample (2 mm voxels -> 8 mm slabs): the map's rank
    correlation with the true |error| on the foreground is clearly positive."""
    reference = sitk.Cast(sample_crop((64, 48, 20), (32, 40, 20)), sitk.sitkFloat32)
    case = Case("t", "matched", 4, "gauss", 4.0, 4.0, axis=0)
    thick = thick_case(reference, case)
    volume = to_volume(thick, force=True, source="t", slice_thickness=8.0)
    result = pipeline.super_resolve_volume(volume, options.make(spacing=2.0, no_adapt=True),
                                           confidence=True)
    m = result.array.shape[0]
    ref = np.moveaxis(sitk.GetArrayFromImage(reference), 2, 0)[:m]  # canonical: x first
    assert ref.shape == result.array.shape
    intensity = normaliser(ref)
    r = normalise(ref, intensity)
    error = np.abs(normalise(result.array, intensity) - r)
    fg = foreground_mask(r)
    rho = spearmanr(result.confidence[fg], error[fg]).statistic
    assert rho > 0.3, rho
    assert result.spread is not None and result.spread.shape == result.array.shape


def test_calibration_is_monotone_and_documented():
    calibration = confidence.load_calibration()
    table = calibration["table"]
    assert np.all(np.diff(table["score"]) > 0) and np.all(np.diff(table["error"]) >= 0)
    assert set(calibration["terms"]) == set(confidence.FEATURES)
    for name, t in calibration["terms"].items():
        assert np.all(np.diff(t["knots"]) > 0) and len(t["heights"]) == len(t["knots"]), name
        assert t["heights"][0] == 0.0  # the bias carries each term's first knot
    assert "--fit" in calibration["command"] and "seen" in calibration["fitted_on"]
    assert not any(h.split(".")[0] in calibration["fitted_on"]
                   for h in __import__("intersr.resources").resources.HELD_OUT)
    assert list(confidence._isotonic(np.array([1.0, 3, 2, 4]), np.ones(4))) == [1, 2.5, 2.5, 4]


def test_memory_model_counts_the_map():
    from intersr.runners import memory
    from intersr.volumes.grid import plan
    grid = plan((256, 256, 40), (1.0, 1.0, 4.0))
    plain, more = memory.required_bytes(grid), memory.required_bytes(grid, confidence=True)
    out = 4 * memory.voxels(grid.output_size)
    assert plain + out <= more <= plain + 3 * out


def test_fit_recovers_an_additive_error_model_and_the_map_streams_it(monkeypatch):
    """Synthetic samples whose log error rises with one feature and ignores another: the fitted
    terms say so, the table is monotone, and the score added in small chunks equals np.interp."""
    rng = np.random.default_rng(0)
    names = ("spread", "intensity")
    samples = []
    for _ in range(3):
        f = {"spread": rng.uniform(-6, -2, 5000), "intensity": rng.uniform(0, 1, 5000)}
        error = np.exp(f["spread"] + 0.1 * rng.standard_normal(5000))
        samples.append((f, error))
    fitted = confidence.fit(samples, names, knots=6)
    spread, intensity = fitted["terms"]["spread"], fitted["terms"]["intensity"]
    assert np.all(np.diff(spread["heights"]) > 0.5)  # about 0.8 per knot interval (slope 1)
    assert max(np.abs(intensity["heights"])) < 0.05
    assert np.all(np.diff(fitted["table"]["error"]) >= 0)
    values = rng.uniform(-7, -1, (3, 5, 7)).astype(np.float32)
    monkeypatch.setattr(confidence, "CHUNK", 16)
    total = np.full(values.shape, 0.5, np.float32)
    confidence.term(values, spread["knots"], spread["heights"], into=total)
    expected = 0.5 + np.interp(values, spread["knots"], spread["heights"])
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_map_leaves_its_inputs_alone_and_fits_the_memory_model(monkeypatch):
    """The map reads the output and the spread without changing them, and holds no more
    output-sized arrays than `runners.memory` budgets (numpy reports its arrays to tracemalloc)."""
    import tracemalloc
    from scipy import ndimage
    from intersr.runners import memory
    rng = np.random.default_rng(0)
    output = ndimage.gaussian_filter(rng.random((40, 48, 48), dtype=np.float32), 2.0)
    thick = np.ascontiguousarray(output[::4])
    spread = np.abs(rng.standard_normal(output.shape).astype(np.float32))
    positions = output_positions(len(thick), 4.0)
    before = output.copy(), spread.copy()
    monkeypatch.setattr(confidence, "CHUNK", 4096)
    tracemalloc.start()
    try:
        conf_map = confidence.confidence_map(thick, output, spread, positions)
        peak = tracemalloc.get_traced_memory()[1] / output.nbytes
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(output, before[0])
    np.testing.assert_array_equal(spread, before[1])
    assert conf_map.shape == output.shape and np.all(conf_map > 0)
    # the spread, plus what the map computes (the map itself counted apart, beside the output)
    assert 1 + peak <= memory.CONFIDENCE_COPIES + 1.05, peak
