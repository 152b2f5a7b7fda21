"""Pre-training stage 2 runs, checkpoints and resumes (on the embedded sample scan)."""
from __future__ import annotations

import json
import shutil

import torch

from conftest import SAMPLE
from intersr.cli import app as cli


def test_mr_stage_trains_checkpoints_and_resumes(tmp_path):
    (tmp_path / "data" / "mr").mkdir(parents=True)
    shutil.copy(SAMPLE, tmp_path / "data" / "mr" / SAMPLE.name)
    argv = ["train", "mr", "--data", str(tmp_path / "data"), "--batch", "2", "--threads", "1",
            "--checkpoint", str(tmp_path / "mr.ckpt"), "--output", str(tmp_path / "mr.pt"),
            "--progress", "none", "--resume"]
    assert cli.main(argv + ["--steps", "200"]) == 0
    first = torch.load(tmp_path / "mr.ckpt", weights_only=True)
    assert first["step"] == 200
    assert cli.main(argv + ["--steps", "202"]) == 0  # resumes at 200, runs 2 more
    report = json.loads((tmp_path / "mr.json").read_text())
    assert report["steps"] == 202
    assert torch.load(tmp_path / "mr.ckpt", weights_only=True)["step"] == 202
    state = torch.load(tmp_path / "mr.pt", weights_only=True)["model"]
    assert any(not torch.equal(state[k], first["model"][k]) for k in state)
    assert cli.main(argv + ["--steps", "202"]) == 0  # finished: nothing to run, still writes
    assert json.loads((tmp_path / "mr.json").read_text())["final_loss"] is not None


def test_blur_jitter_changes_only_the_thickness_the_network_is_told():
    """--blur-jitter: the same pairs, but the blur input is the truth times a log-normal
    factor (a noisy hint, as the run-time estimate is); 0 tells the truth."""
    import numpy as np
    from intersr.training.data import mr_batch

    rng = np.random.default_rng(5)
    volume = rng.normal(size=(40, 40, 40)).astype(np.float32)
    volumes = [(volume, (1.0, 1.0, 1.0))]
    ratios = []
    for seed in range(40):
        truth = mr_batch(volumes, 2, np.random.default_rng(seed))
        told = mr_batch(volumes, 2, np.random.default_rng(seed), blur_jitter=0.2)
        assert torch.equal(truth.thick, told.thick) and torch.equal(truth.fine, told.fine)
        assert truth.factor == told.factor
        ratios.append(told.blur / truth.blur)
    logs = np.log(ratios)
    assert 0.1 < logs.std() < 0.3 and abs(np.mean(logs)) < 0.1
    again = mr_batch(volumes, 2, np.random.default_rng(3), blur_jitter=0.0)
    assert again.blur == mr_batch(volumes, 2, np.random.default_rng(3)).blur


def _stage_weights(tmp_path, name, extra):
    argv = ["train", "mr", "--data", str(tmp_path / "data"), "--batch", "2", "--threads", "1",
            "--steps", "3", "--checkpoint", str(tmp_path / f"{name}.ckpt"),
            "--output", str(tmp_path / f"{name}.pt"), "--progress", "none", *extra]
    assert cli.main(argv) == 0
    return torch.load(tmp_path / f"{name}.pt", weights_only=True)["model"]


def test_batches_do_not_depend_on_worker_processes_and_accumulation_is_used(tmp_path):
    """Each step's batches come from (seed, step, j): made in 2 forked workers they are the
    ones the training process makes itself, so the weights are identical; averaging two
    batches per step is a different (larger) step."""
    (tmp_path / "data" / "mr").mkdir(parents=True)
    shutil.copy(SAMPLE, tmp_path / "data" / "mr" / SAMPLE.name)
    alone = _stage_weights(tmp_path, "alone", ["--accumulate", "2"])
    workers = _stage_weights(tmp_path, "workers", ["--accumulate", "2", "--workers", "2"])
    single = _stage_weights(tmp_path, "single", [])
    assert all(torch.equal(alone[k], workers[k]) for k in alone)
    assert any(not torch.equal(alone[k], single[k]) for k in alone)


def test_the_pack_holds_exactly_the_volumes_the_folder_gives(tmp_path):
    """`train pack` lets a machine without SimpleITK train on the same data: loading the pack
    alone (no mr/ folder) gives the same normalised arrays and spacings; held-out volumes
    are never packed."""
    import numpy as np
    from intersr.resources import HELD_OUT
    from intersr.training.data import load_mr

    folder = tmp_path / "data" / "mr"
    folder.mkdir(parents=True)
    shutil.copy(SAMPLE, folder / SAMPLE.name)
    shutil.copy(SAMPLE, folder / HELD_OUT[0])
    assert cli.main(["train", "pack", "--data", str(tmp_path / "data")]) == 0
    from_folder = load_mr(tmp_path / "data")
    only_pack = tmp_path / "gpu"
    only_pack.mkdir()
    (tmp_path / "data" / "mr.npz").rename(only_pack / "mr.npz")
    from_pack = load_mr(only_pack)
    assert len(from_folder) == len(from_pack) == 1
    assert np.array_equal(from_folder[0][0], from_pack[0][0])
    assert from_folder[0][1] == from_pack[0][1]
    with np.load(only_pack / "mr.npz") as pack:
        assert [str(pack[k]) for k in pack.files if k.startswith("name")] == [SAMPLE.name]


def _worker_signal_handlers() -> tuple:
    import signal
    return (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP),
            signal.getsignal(signal.SIGINT))


def test_batch_workers_do_not_inherit_the_cancel_handlers():
    """The pool stops its workers with SIGTERM when a run ends: a worker that kept the
    command's cancel handler raised `Cancelled` and printed a traceback each (seen on the GPU
    machine, 14 workers); Ctrl-C belongs to the training process."""
    import multiprocessing
    import signal

    from intersr.training.fit import _worker_start

    previous = signal.signal(signal.SIGTERM, cli._cancel_on)
    try:
        with multiprocessing.get_context("fork").Pool(1, initializer=_worker_start) as pool:
            term, hup, interrupt = pool.apply(_worker_signal_handlers)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert term == signal.SIG_DFL and hup == signal.SIG_DFL
    assert interrupt == signal.SIG_IGN
