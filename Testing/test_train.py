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
