"""Fast tests of the fusion (each < 20 s on 2 CPU cores): run `pytest test_fusion.py`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from intersr.acquisition.metrics import foreground_mask, normaliser, psnr
from intersr.bench.fusion_cases import random_motion, simulate_stack
from intersr.methods.fusion.combine import bspline_baselines, fuse, resample_to, transforms_of
from intersr.methods.fusion.forward import Grid, StackOperator, output_grid
from intersr.methods.fusion.register import displacement_error, register
from intersr.methods.fusion.stacks import Stack, corners, make_stacks
from intersr.options import make
from intersr.resources import SAMPLE
from intersr.runners.fuse import network_prior


@pytest.fixture(scope="module")
def truth() -> sitk.Image:
    """The embedded real T1 (2 x 2 x 3 mm) at 2 mm isotropic, cropped to 64 x 72 x 64."""
    image = sitk.ReadImage(str(SAMPLE), sitk.sitkFloat32)
    image = sitk.Resample(image, [128, 128, 93], sitk.Transform(), sitk.sitkBSpline,
                          image.GetOrigin(), (2.0, 2.0, 2.0), image.GetDirection(), 0.0,
                          sitk.sitkFloat32)
    return sitk.Crop(image, [32, 28, 14], [32, 28, 15])


def case(truth, orients=("axial", "coronal", "sagittal"), factor=3, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    centre = corners(truth).mean(0)
    images, thick, motions = [], [], []
    for k, o in enumerate(orients):
        m = sitk.Euler3DTransform() if k == 0 else random_motion(rng, centre, 4.0, 3.0)
        # slabs of factor x 2 mm (the truth is at 2 mm): in-plane 2 mm
        im, t = _simulate(truth, o, factor, m, noise, rng)
        images.append(im)
        thick.append(t)
        motions.append(m)
    return images, thick, motions


def _simulate(truth, orientation, factor, motion, noise, rng):
    """simulate_stack works in 1 mm units: scale the truth's spacing to 1 mm and back."""
    unit = sitk.Image(truth)
    unit.SetSpacing((1.0, 1.0, 1.0))
    unit.SetOrigin(tuple(np.asarray(truth.GetOrigin()) / 2))
    m = None
    if motion is not None:
        m = sitk.Euler3DTransform(motion)
        m.SetCenter(tuple(np.asarray(motion.GetCenter()) / 2))
        m.SetTranslation(tuple(np.asarray(motion.GetTranslation()) / 2))
    im, t = simulate_stack(unit, orientation, factor, motion=m, noise=noise, rng=rng)
    im.SetSpacing(tuple(np.asarray(im.GetSpacing()) * 2))
    im.SetOrigin(tuple(np.asarray(im.GetOrigin()) * 2))
    return im, 2 * t


def foreground_points(truth):
    arr = sitk.GetArrayViewFromImage(truth)
    idx = np.argwhere(arr > 0.2 * np.percentile(arr, 99.5))[::23]
    return np.array([truth.TransformIndexToPhysicalPoint([int(i) for i in p[::-1]])
                     for p in idx])


def test_registration_recovers_known_motion(truth):
    images, thick, motions = case(truth, ("axial", "coronal"))
    stacks = make_stacks(images, thick)
    result = register(stacks[0], stacks[1], spacing=1.5)  # finer than the 2 mm voxels here
    pts = foreground_points(truth)
    assert displacement_error(sitk.Euler3DTransform(), motions[1], pts) > 2.0  # real motion
    assert displacement_error(result.transform, motions[1], pts) < 0.5
    assert result.overlap > 0.8


def test_forward_reproduces_simulated_stacks(truth):
    images, thick, motions = case(truth)
    stacks = make_stacks(images, thick)
    grid = output_grid(stacks[0])
    x = resample_to(truth, grid, None, sitk.sitkLinear)
    top = np.percentile(x, 99.5)
    for k, (st, m) in enumerate(zip(stacks, motions)):
        op = StackOperator(st, grid, m)
        sim, obs, ok = op.forward(x), st.array(), op.valid > 0
        assert ok.mean() > 0.5
        err = psnr(obs[ok] / top, sim[ok] / top)
        assert err > (40 if k == 0 else 28), (k, err)  # B-spline vs trilinear resampling
        if k > 0:  # the transform matters: without it the prediction is clearly worse
            wrong = StackOperator(st, grid, None).forward(x)
            assert err > psnr(obs[ok] / top, wrong[ok] / top) + 3, k


@pytest.mark.parametrize("fwhm", [0.0, 1.2])
def test_adjoint_is_exact(truth, fwhm):
    images, thick, motions = case(truth, ("axial", "sagittal"))
    stacks = make_stacks(images, thick, "sinc")
    grid = output_grid(stacks[0])
    op = StackOperator(stacks[1], grid, motions[1], inplane_fwhm=fwhm)
    rng = np.random.default_rng(1)
    x = rng.normal(size=grid.shape).astype(np.float32)
    y = rng.normal(size=stacks[1].array().shape).astype(np.float32)
    lhs = float(np.vdot(op.forward(x).astype(np.float64), y))
    rhs = float(np.vdot(x.ravel().astype(np.float64), op.adjoint(y)))
    assert abs(lhs - rhs) <= 1e-5 * (abs(lhs) + 1e-12) + 1e-3


def test_oblique_reference_grid_and_direction(truth):
    images, thick, _ = case(truth, ("axial", "coronal"))
    rot = sitk.Euler3DTransform()
    rot.SetRotation(0.3, -0.2, 0.25)
    d = np.asarray(rot.GetMatrix()).reshape(3, 3) @ np.asarray(
        images[0].GetDirection()).reshape(3, 3)
    oblique = sitk.Image(images[0])
    oblique.SetDirection(tuple(d.ravel()))
    # resample the truth's axial stack geometry: any content is fine for the grid check
    stacks = make_stacks([oblique, images[1]], thick)
    grid = output_grid(stacks[0])
    assert np.allclose(grid.direction, oblique.GetDirection())
    assert np.allclose(grid.spacing, [2.0] * 3)
    ext = np.asarray(oblique.GetSize()) * np.asarray(oblique.GetSpacing())
    assert np.allclose(np.asarray(grid.size) * 2.0, ext, atol=2.0)
    assert np.allclose(corners(grid.image()), corners(oblique), atol=1.0 + 1e-6)


def test_fused_output_keeps_oblique_reference_frame(truth):
    rot = sitk.Euler3DTransform()
    rot.SetRotation(0.2, 0.1, -0.15)
    tilted = sitk.Image(truth)  # the same voxels, scanned obliquely
    tilted.SetDirection(tuple((np.asarray(rot.GetMatrix()).reshape(3, 3)
                               @ np.asarray(truth.GetDirection()).reshape(3, 3)).ravel()))
    images, thick, _ = case(tilted, ("axial", "coronal"))
    out, report = fuse(images, thick, network=False, register=False, iterations=3)
    assert np.allclose(out.GetDirection(), images[0].GetDirection(), atol=1e-9)
    assert np.allclose(out.GetSpacing(), [2.0] * 3)
    assert report["grid"]["size"] == list(out.GetSize())


def test_no_overlap_stack_refused(truth):
    images, thick, _ = case(truth, ("axial", "coronal"))
    far = sitk.Image(images[1])
    far.SetOrigin(tuple(np.asarray(far.GetOrigin()) + 1000.0))
    with pytest.raises(ValueError, match="does not overlap"):
        fuse([images[0], far], thick, network=False)


def test_4d_vector_and_label_map_refused(truth):
    images, thick, _ = case(truth, ("axial", "coronal"))
    four = sitk.JoinSeries([images[0], images[0]])
    with pytest.raises(ValueError, match="4-D"):
        make_stacks([four, images[1]], thick)
    vec = sitk.Compose(images[0], images[0])
    with pytest.raises(ValueError, match="vector"):
        make_stacks([vec, images[1]], thick)
    labels = sitk.Cast(sitk.OtsuMultipleThresholds(images[1], 3), sitk.sitkUInt8)
    with pytest.raises(ValueError, match="label map"):
        make_stacks([images[0], labels], thick)


def test_single_stack_refused_points_to_intersr_run(truth):
    images, thick, _ = case(truth, ("axial",))
    with pytest.raises(ValueError, match="intersr run"):
        fuse(images, thick)


def test_stack_slice_axis_and_profile_checked(truth):
    images, thick, _ = case(truth, ("coronal", "axial"))
    st = Stack(images[0], thick[0])
    assert st.slice_axis == 2 and st.slice_spacing == pytest.approx(6.0)
    with pytest.raises(ValueError, match="profile"):
        Stack(images[0], thick[0], profile="triangle")


def test_fusion_beats_best_single_stack_bspline(truth):
    images, thick, _ = case(truth, factor=3, seed=3)
    out, report = fuse(images, thick, iterations=20,
                       upsample=network_prior(make(no_adapt=True, device="cpu"), {}))
    tfs = transforms_of(report)
    grid = Grid.of(out)
    ref = resample_to(truth, grid, None, sitk.sitkLinear)
    norm = normaliser(ref)
    r = np.clip(norm.apply(ref), 0, 1)
    mask = foreground_mask(r)
    score = lambda a: psnr(r, np.clip(norm.apply(a), 0, 1), mask)  # noqa: E731
    best = max(score(b) for b in bspline_baselines(images, tfs, out))
    fused = score(sitk.GetArrayFromImage(out))
    assert fused > best + 1.0, (fused, best)
    assert all(s["intensity_scale"] == pytest.approx(1.0, abs=0.1) for s in report["stacks"])


# ------------------------------------------------------------------ `intersr fuse`, end to end
def write_case(folder, images, names=("axial", "coronal", "sagittal")):
    paths = []
    for image, name in zip(images, names):
        path = folder / f"{name}.nrrd"
        sitk.WriteImage(image, str(path))
        paths.append(str(path))
    return paths


def fuse_cli(*args, timeout=600):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "intersr", "fuse", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_fuses_three_stacks_into_the_reference_frame_with_provenance(truth, tmp_path):
    import json

    images, thick, _ = case(truth, factor=3, seed=5)
    paths = write_case(tmp_path, images)
    out = tmp_path / "fused.nrrd"
    proc = fuse_cli(*paths, "--output", out, "--no-adapt", "--device", "cpu",
                    "--thickness", ",".join(f"{t:g}" for t in thick), "--progress", "jsonl")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    stages = [e["stage"] for e in events]
    for stage in ("load", "register", "prior", "fuse", "write", "done"):
        assert stage in stages, stages
    fused = sitk.ReadImage(str(out))
    reference = images[0]
    assert fused.GetDirection() == pytest.approx(reference.GetDirection(), abs=1e-9)
    assert fused.GetSpacing() == pytest.approx((2.0, 2.0, 2.0), abs=1e-6)
    assert fused.GetMetaData("intersr_stacks") == "3"
    assert "from 3 stacks, not acquired" in fused.GetMetaData("intersr_note")
    inputs = fused.GetMetaData("intersr_inputs")
    assert all(Path(p).name in inputs for p in paths)
    transforms = fused.GetMetaData("intersr_stack_transforms").split(" | ")
    assert transforms[0] == "reference" and transforms[1].startswith("rotation_rad")
    assert fused.GetMetaData("intersr_weights_sha256") != "none"
    assert events[-1]["provenance"]["intersr_stacks"] == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [Path(p).name for p in paths] + ["fused.nrrd"])


def test_cli_refuses_bad_stack_lists_and_writes_nothing(truth, tmp_path):
    images, thick, _ = case(truth, orients=("axial", "coronal"), factor=3, seed=6)
    good = write_case(tmp_path, images)
    out = tmp_path / "never.nrrd"
    far = sitk.Image(images[1])
    far.SetOrigin(tuple(np.asarray(far.GetOrigin()) + 5000.0))
    sitk.WriteImage(far, str(tmp_path / "far.nrrd"))
    vector = sitk.Compose(images[1], images[1])
    sitk.WriteImage(vector, str(tmp_path / "vector.nrrd"))
    labels = sitk.Cast(images[1] > 50, sitk.sitkUInt8)
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))
    cases = {
        (good[0],): "intersr run",
        (good[0], tmp_path / "far.nrrd"): "overlap",
        (good[0], tmp_path / "vector.nrrd"): "component",
        (good[0], tmp_path / "labels.nrrd"): "label",
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    for stacks, words in cases.items():
        proc = fuse_cli(*stacks, "--output", out, "--no-adapt", "--progress", "none")
        assert proc.returncode == 2, (stacks, proc.stderr)
        assert words in proc.stderr.lower(), (words, proc.stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    proc = fuse_cli(*good, "--output", out, "--reference", "2", "--progress", "none")
    assert proc.returncode == 2 and "--reference 2" in proc.stderr


def test_cli_warns_about_a_stack_of_another_contrast(truth, tmp_path):
    images, thick, _ = case(truth, orients=("axial", "coronal"), factor=3, seed=7)
    inverted = sitk.Cast(float(np.max(sitk.GetArrayViewFromImage(images[1]))) - images[1],
                         sitk.sitkFloat32)
    paths = write_case(tmp_path, [images[0], inverted])
    out = tmp_path / "fused.nrrd"
    proc = fuse_cli(*paths, "--output", out, "--no-adapt", "--no-register", "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    assert "different contrast" in proc.stderr
    assert "different contrast" in sitk.ReadImage(str(out)).GetMetaData("intersr_warnings")


def test_cli_cancel_during_fusion_leaves_nothing(truth, tmp_path):
    import json
    import signal
    import subprocess
    import sys

    images, thick, _ = case(truth, factor=3, seed=8)
    paths = write_case(tmp_path, images)
    out = tmp_path / "fused.nrrd"
    proc = subprocess.Popen([sys.executable, "-m", "intersr", "fuse", *paths, "--output",
                             str(out), "--no-adapt", "--progress", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if json.loads(line)["stage"] in ("prior", "fuse"):
            proc.send_signal(signal.SIGTERM)
            break
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in paths)
