"""Network, adaptation, inference and weights on small real volumes."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from conftest import sample_crop
from intersr.methods.self_supervised import AdaptConfig, adapt
from intersr.errors import WeightsError
from intersr.networks.infer import super_resolve
from intersr.networks.network import NetConfig, build_network
from intersr.volumes.read import to_volume
from intersr.networks.weights import load_pretrained, models_dir, save_weights


@pytest.mark.parametrize("design", ["inr", "cnn"])
def test_network_queries_any_continuous_position(design):
    torch.manual_seed(0)
    model = build_network(NetConfig(design=design, channels=8, blocks=1, hidden=16))
    lr = torch.rand(2, 1, 6, 10)
    for factor in (2.5, 4.0, 6.6):
        positions = torch.tensor((np.arange(int(6 * factor)) + 0.5) / factor - 0.5,
                                 dtype=torch.float32)
        out = model(lr, positions, factor, 1.0)
        assert out.shape == (2, 1, len(positions), 10)


def test_adaptation_lowers_held_out_loss_on_real_volume():
    volume = to_volume(sample_crop((64, 64, 20), (32, 32, 20)))
    scale = np.percentile(volume.array, 99.5)
    torch.manual_seed(0)
    model = build_network(NetConfig())
    result = adapt(model, volume.array / scale, (3.0, 2.0, 2.0), 3.0,
                   AdaptConfig(steps=60, eval_every=20, batch=4, lr=1e-3), torch.device("cpu"))
    assert result.steps > 0
    assert result.final_loss < 0.8 * result.initial_loss


def test_adaptation_is_deterministic_with_seed():
    volume = to_volume(sample_crop((40, 40, 12), (40, 40, 24)))
    losses = []
    for _ in range(2):
        torch.manual_seed(3)
        model = build_network(NetConfig(channels=8, blocks=1, hidden=16))
        result = adapt(model, volume.array / 300.0, (3.0, 2.0, 2.0), 3.0,
                       AdaptConfig(steps=10, eval_every=5, batch=2, seed=3), torch.device("cpu"))
        losses.append([h[2] for h in result.history])
    assert losses[0] == losses[1]


def test_kept_budgets_equal_separate_shorter_runs():
    """keep_at (the bench's quality-vs-budget curve) keeps exactly what a run with that many
    steps returns, so one adaptation gives every shorter budget's result."""
    volume = to_volume(sample_crop((40, 40, 12), (40, 40, 24))).array / 300.0
    settings = dict(eval_every=5, batch=2, seed=3, lr=1e-2)

    def run(steps, keep_at=()):
        torch.manual_seed(3)
        model = build_network(NetConfig(channels=8, blocks=1, hidden=16))
        result = adapt(model, volume, (3.0, 2.0, 2.0), 3.0,
                       AdaptConfig(steps=steps, keep_at=keep_at, **settings), torch.device("cpu"))
        return model.state_dict(), result

    _, long = run(20, keep_at=(5, 10, 20))
    assert sorted(long.kept) == [5, 10, 20]
    for steps in (10, 20):
        alone, _ = run(steps)
        for key, value in alone.items():
            torch.testing.assert_close(long.kept[steps][0][key], value)
    with pytest.raises(ValueError, match="multiples of 5"):
        run(10, keep_at=(7,))


def test_adaptation_keeps_the_moving_average_of_the_weights():
    """With `average` the weights kept are the running mean of every step's weights, not
    the last step's: replaying the same steps with the raw weights and averaging by hand
    gives the kept weights exactly."""
    volume = to_volume(sample_crop((40, 40, 12), (40, 40, 24))).array / 300.0
    settings = dict(steps=6, eval_every=100, patience=10**6, batch=2, lr=1e-2, seed=1)
    states = []
    for average in (0.0, 0.8):
        torch.manual_seed(3)
        model = build_network(NetConfig(channels=8, blocks=1, hidden=16))
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        trace = []
        original_step = torch.optim.Adam.step

        def step_and_record(self, *args, **kwargs):
            out = original_step(self, *args, **kwargs)
            trace.append({k: v.clone() for k, v in model.state_dict().items()})
            return out
        torch.optim.Adam.step = step_and_record
        try:
            adapt(model, volume, (3.0, 2.0, 2.0), 3.0, AdaptConfig(average=average, **settings),
                  torch.device("cpu"))
        finally:
            torch.optim.Adam.step = original_step
        states.append((initial, trace, model.state_dict()))
    (_, raw_trace, raw_final), (initial, trace, kept) = states
    assert len(trace) == 6
    for a, b in zip(raw_trace, trace):  # the optimiser's path does not depend on the average
        for k in a:
            torch.testing.assert_close(a[k], b[k])
    mean = {k: v.clone() for k, v in initial.items()}
    for step, weights in enumerate(trace, start=1):
        decay = min(0.8, (1 + step) / (10 + step))
        for k in mean:
            mean[k] = decay * mean[k] + (1 - decay) * weights[k]
    # the loss of the last check decides: either the mean after 6 steps or the initial weights
    key = next(iter(kept))
    assert not torch.allclose(kept[key], raw_final[key])
    for k in kept:
        torch.testing.assert_close(kept[k], mean[k], rtol=1e-5, atol=1e-6)


def test_inference_chunks_give_same_result():
    volume = to_volume(sample_crop((30, 26, 10), (40, 40, 24))).array / 300.0
    torch.manual_seed(0)
    model = build_network(NetConfig(channels=8, blocks=1, hidden=16))
    positions = (np.arange(15) + 0.5) / 1.5 - 0.5
    whole = super_resolve(model, volume, positions, 1.5, 1.0, torch.device("cpu"))
    tiny = super_resolve(model, volume, positions, 1.5, 1.0, torch.device("cpu"), chunk_bytes=1)
    assert whole.shape == (15, 26, 30)
    np.testing.assert_allclose(whole, tiny, atol=1e-5)


def test_planes_beside_an_axis_adaptation_never_learned_keep_the_initial_network(tmp_path,
                                                                             monkeypatch):
    """A series whose second in-plane axis is itself thick (2 x 10 mm in-plane): adaptation's
    pairs all lie beside the 10 mm axis, so only inference planes beside it get the adapted
    network; those beside the fine axis get the shipped one, unchanged. Near-isotropic
    in-plane, one adapted network for both."""
    from intersr.methods.dispatch import adapted_backend
    from intersr.networks.backends import PerPlane, TorchBackend
    from intersr.options import RunOptions
    from intersr.progress import Progress
    volume = to_volume(sample_crop((48, 40, 14), (40, 40, 24))).array / 300.0  # (14, 40, 48)
    options = RunOptions(adapt_steps=10, device="cpu", seed=0)
    positions = (np.arange(21) + 0.5) / 1.5 - 0.5
    shipped = TorchBackend(load_pretrained().model, "cpu")
    logs = io.StringIO()
    backend, result, _, extra = adapted_backend(options, volume, (6.0, 2.0, 10.0), 6.0, 1.5,
                                                use_ort=False, progress=Progress("none", log=logs))
    assert isinstance(backend, PerPlane) and result.beside == (2,)
    assert backend.beside(1) is not backend.beside(2)
    planes = np.moveaxis(volume[:, :8, :], 1, 0)  # planes along rows: beside the cols (axis 2)
    np.testing.assert_allclose(backend.beside(1).run_planes(planes, positions, 1.5, 1.0),
                               shipped.run_planes(planes, positions, 1.5, 1.0), atol=1e-6)
    assert not np.allclose(backend.beside(2).run_planes(planes, positions, 1.5, 1.0),
                           shipped.run_planes(planes, positions, 1.5, 1.0), atol=1e-4)
    assert extra["pretrained_planes"] == "beside the 2 mm in-plane axis"
    assert "planes beside the 2 mm one keep the pretrained network" in logs.getvalue()
    # each pass runs its own network: planes along rows (slices x cols, beside the cols) the
    # adapted one, planes along cols (slices x rows) the initial one
    adapted, initial = backend.adapted, backend.initial
    mixed = super_resolve(backend, volume, positions, 1.5, 1.0)
    along_rows = np.moveaxis(adapted.run_planes(np.moveaxis(volume, 1, 0), positions, 1.5, 1.0),
                             0, 1)
    along_cols = np.moveaxis(initial.run_planes(np.moveaxis(volume, 2, 0), positions, 1.5, 1.0),
                             0, 2)
    np.testing.assert_allclose(mixed, 0.5 * (along_rows + along_cols), atol=1e-5)
    pure = [super_resolve(b, volume, positions, 1.5, 1.0) for b in (adapted, initial)]
    assert not np.allclose(mixed, pure[0], atol=1e-4) and not np.allclose(mixed, pure[1], atol=1e-4)
    np.testing.assert_allclose(super_resolve(PerPlane(adapted, initial, (1, 2)), volume,
                                             positions, 1.5, 1.0), pure[0], atol=1e-6)
    # on the CPU's default path both networks run on ONNX Runtime
    exported, *_ = adapted_backend(options, volume, (6.0, 2.0, 10.0), 6.0, 1.5, use_ort=True,
                                   progress=Progress("none"), workdir=str(tmp_path))
    assert {exported.beside(a).name for a in (1, 2)} == {"onnxruntime"}
    # the initial network is the shipped one: its own ONNX file runs, no second export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapted.onnx"]
    # a models folder without a usable ONNX file: the initial network is exported instead
    from intersr.errors import WeightsError
    from intersr.methods import dispatch

    def no_onnx(*args, **kwargs):
        raise WeightsError("no ONNX export listed")
    monkeypatch.setattr(dispatch, "shipped_ort", no_onnx)
    (tmp_path / "again").mkdir()
    again, *_ = adapted_backend(options, volume, (6.0, 2.0, 10.0), 6.0, 1.5, use_ort=True,
                                progress=Progress("none"), workdir=str(tmp_path / "again"))
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["adapted.onnx",
                                                                      "initial.onnx"]
    np.testing.assert_allclose(again.beside(1).run_planes(planes, positions, 1.5, 1.0),
                               shipped.run_planes(planes, positions, 1.5, 1.0), atol=1e-4)
    np.testing.assert_allclose(exported.beside(1).run_planes(planes, positions, 1.5, 1.0),
                               shipped.run_planes(planes, positions, 1.5, 1.0), atol=1e-4)
    np.testing.assert_allclose(super_resolve(exported, volume, positions, 1.5, 1.0), mixed,
                               atol=1e-4)
    plain, result, _, extra = adapted_backend(options, volume, (6.0, 2.0, 2.0), 6.0, 1.5,
                                              use_ort=False, progress=Progress("none"))
    assert not isinstance(plain, PerPlane) and result.beside == (1, 2)
    assert "pretrained_planes" not in extra
    # near-isotropic in-plane but one axis too short for pairs at this factor: no coarse axis,
    # so the adapted network runs everywhere
    short = volume[:, :, :10]
    plain, result, _, extra = adapted_backend(options, short, (12.0, 2.0, 2.0), 12.0, 1.5,
                                              use_ort=False, progress=Progress("none"))
    assert result.beside == (2,) and not isinstance(plain, PerPlane)


def test_weights_checksum_is_verified(tmp_path):
    model = build_network(NetConfig(channels=8, blocks=1, hidden=16))
    save_weights(model, NetConfig(channels=8, blocks=1, hidden=16), tmp_path, "w.pt")
    loaded = load_pretrained(tmp_path)
    assert loaded is not None and len(loaded.sha256) == 64
    with open(tmp_path / "w.pt", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(WeightsError, match="corrupted: sha256"):
        load_pretrained(tmp_path)
    (tmp_path / "w.pt").unlink()
    with pytest.raises(WeightsError, match="weights file missing"):
        load_pretrained(tmp_path)


def test_shipped_weights_load_and_match_manifest():
    manifest = json.loads((models_dir() / "weights.json").read_text())
    pretrained = load_pretrained()
    assert pretrained is not None
    assert pretrained.sha256 == manifest["weights"][0]["sha256"]
    total = sum(p.stat().st_size for p in models_dir().glob("*.pt"))
    assert total <= 30 * 2**20
