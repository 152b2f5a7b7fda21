"""The VAE-pairs method: synthesis grid and range, pairs from the one degradation model,
repeatability with --seed, provenance and progress stages, cancellation."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import sample_crop
from test_cli import ENV, assert_sigterm_at_stage_leaves_nothing
from intersr.acquisition.degrade import SliceProfile, degrade
from intersr.methods.vae import VAEConfig, synthesise, train_vae
from intersr.methods.vae_pairs import synthetic_samplers
from intersr.volumes.grid import output_positions, output_slice_count
from intersr.volumes.read import to_volume


@pytest.fixture(scope="module")
def small_vae():
    """A briefly trained VAE and the normalised real crop it learned (slices, rows, cols)."""
    volume = to_volume(sample_crop((40, 36, 10), (40, 40, 24))).array
    volume = volume / np.percentile(volume, 99.5)
    torch.manual_seed(0)
    vae, result = train_vae(volume, VAEConfig(steps=40, batch=4, patch=32, seed=0),
                            torch.device("cpu"))
    return vae, volume, result


@pytest.mark.parametrize("factor", [2.0, 2.5, 4.0])
def test_synthetic_volume_has_requested_spacing_and_input_range(small_vae, factor):
    vae, volume, result = small_vae
    assert result.steps == 40 and np.isfinite(result.final_loss)
    positions = output_positions(len(volume), factor)
    synthetic = synthesise(vae, volume, positions, torch.device("cpu"))
    # the output grid at spacing s / factor, same field of view, in-plane size unchanged
    assert synthetic.shape == (output_slice_count(len(volume), factor), *volume.shape[1:])
    assert synthetic.min() >= volume.min() and synthetic.max() <= volume.max()
    # where a synthetic slice falls on an acquired one, it is that slice (VAE residual kept)
    on_grid = np.flatnonzero(np.isclose(positions, np.round(positions)))
    for j in on_grid:
        np.testing.assert_allclose(synthetic[j], volume[int(round(positions[j]))], atol=1e-4)
    # in between, the decoder's image of the blended codes is not a plain blend of the two
    # neighbours (a blend would differ by float rounding only, ~1e-8; a briefly trained VAE's
    # nonlinearity gives ~1e-4)
    j = int(np.flatnonzero(~np.isclose(positions, np.round(positions)) & (positions > 0)
                           & (positions < len(volume) - 1))[0])
    lo, w = int(np.floor(positions[j])), positions[j] - np.floor(positions[j])
    blend = (1 - w) * volume[lo] + w * volume[lo + 1]
    assert np.abs(synthetic[j] - blend).mean() > 1e-5


def test_pairs_come_from_the_degradation_model(small_vae):
    vae, volume, _ = small_vae
    factor, fwhm = 3.0, 3.0
    synthetic = synthesise(vae, volume, output_positions(len(volume), factor), torch.device("cpu"))
    # the estimated profile(s), FWHM in mm of input slices spaced 2 mm: a box 1.5 slices wide
    # (4.5 synthetic slices) and a Gaussian of one slice (3 synthetic slices)
    profiles = [SliceProfile("box", 3.0), SliceProfile("gauss", 2.0)]
    samplers = synthetic_samplers(synthetic, factor, profiles, 2.0, np.arange(36))
    assert len(samplers) == 4
    for sampler, (shape, fwhm) in zip(samplers, [("box", 4.5)] * 2 + [("gauss", 3.0)] * 2):
        batch = sampler.sample(3, np.random.default_rng(1), augment=False)
        fine = batch.fine[:, 0].numpy()  # (B, L, W): synthetic HR along the slice axis
        # the synthetic HR is degraded by degrade.degrade with the profile it was given;
        # never paired with the real LR
        expected = degrade(fine, 1, factor, fwhm, shape)
        assert not np.allclose(batch.thick[:, 0].numpy(), degrade(fine, 1, factor, 3.0,
                                                                   "gauss" if shape == "box"
                                                                   else "box"), atol=1e-4)
        np.testing.assert_allclose(batch.thick[:, 0].numpy(), expected, atol=1e-5)
        assert batch.fine.shape[2] == int(np.floor(batch.thick.shape[2] * factor + 1e-6))
        # each HR patch is a window of a (slices x rows|cols) plane of the synthetic volume
        assert np.shares_memory(sampler.view, synthetic)
        length, width = fine.shape[1:]
        view = sampler.view
        assert any(np.array_equal(view[k, i:i + length, j:j + width], fine[0])
                   for k in range(view.shape[0]) for i in range(view.shape[1] - length + 1)
                   for j in range(view.shape[2] - width + 1))


def run_engine(src: Path, dst: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "intersr", "run", str(src), str(dst),
                           "--method", "vae-pairs", "--progress", "jsonl", *extra],
                          capture_output=True, text=True, env=ENV, timeout=300)


def test_step_budget_run_is_repeatable_with_seed_and_records_method(tmp_path):
    src = tmp_path / "thick.nrrd"
    sitk.WriteImage(sample_crop((32, 32, 10), (44, 44, 24)), str(src))
    outputs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        proc = run_engine(src, tmp_path / f"{name}.nrrd", "--adapt-steps", "6", "--seed", seed)
        assert proc.returncode == 0, proc.stderr
        events = [json.loads(line) for line in proc.stdout.splitlines()]
        stages = [e["stage"] for e in events]
        for stage in ("vae", "synth", "adapt", "infer", "write"):
            assert stage in stages, stage
        assert stages.index("vae") < stages.index("synth") < stages.index("adapt") \
            < stages.index("infer")
        provenance = events[-1]["provenance"]
        assert "VAE" in provenance["intersr_method"]
        assert provenance["intersr_vae_steps"] == "6"
        assert provenance["intersr_adapt_steps"] == "6"
        image = sitk.ReadImage(str(tmp_path / f"{name}.nrrd"))
        assert "VAE" in image.GetMetaData("intersr_method")
        outputs.append(sitk.GetArrayFromImage(image))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[2])


def test_sigterm_during_vae_training_leaves_nothing(tmp_path, small_volume):
    assert_sigterm_at_stage_leaves_nothing(small_volume, tmp_path / "out",
                                           ["--method", "vae-pairs"], "vae", 150)


def test_gui_progress_labels_vae_stages_and_never_goes_back():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "InterSliceSR"))
    from InterSliceSRLib.progress import ProgressState

    state = ProgressState()
    fractions = []
    for event in ({"stage": "load", "step": 1, "steps": 1},
                  {"stage": "vae", "step": 5, "steps": 10, "loss": 0.1},
                  {"stage": "synth", "step": 3, "steps": 3},
                  {"stage": "adapt", "step": 1, "steps": 100},
                  {"stage": "infer", "step": 5, "steps": 10}):
        state.update(event)
        fractions.append(state.fraction)
        if event["stage"] == "vae":
            assert state.text().startswith("Training the VAE on this volume 5/10")
        if event["stage"] == "synth":
            assert state.text().startswith("Synthesising thin-slice volumes")
    assert fractions == sorted(fractions) and 0.05 < fractions[1] < fractions[2] < 0.8


def test_slicer_method_choice_reaches_the_engine_command():
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "InterSliceSR"))
    from InterSliceSRLib.logic import RunParameters

    def engine_args(method):
        node = SimpleNamespace(targetSpacing=0.0, sliceThickness=0.0, device="cpu",
                               budget="fast", budgetSeconds=120.0, seed=0, method=method)
        return RunParameters.fromParameterNode(node).engineArgs("in.nrrd", "out.nrrd",
                                                                python="python")

    args = engine_args("vae-pairs")
    assert args[args.index("--method") + 1] == "vae-pairs"
    assert "--method" not in engine_args("self-supervised")  # the default is left out
