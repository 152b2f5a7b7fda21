"""Pre-training stage 2 runs, checkpoints and resumes (on the embedded sample scan)."""
from __future__ import annotations

import json
import shutil

import torch

from conftest import SAMPLE
from intersr import cli


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
    from intersr.train import mr_batch

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
