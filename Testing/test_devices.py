"""Devices: a CUDA GPU that PyTorch lists but cannot use falls back to the CPU (auto) with one
line in the log, or is refused with the reason (an explicit --device cuda)."""
from __future__ import annotations

import pytest
import SimpleITK as sitk
import torch

from intersr.cli import app as cli
from intersr.errors import ResourceError
from intersr.networks import backends

NO_KERNEL = "CUDA error: no kernel image is available for execution on the device\nmore text"


@pytest.fixture
def broken_gpu(monkeypatch):
    """PyTorch sees a GPU, and the first kernel on it fails (as on an unsupported architecture)."""
    probed = []

    def probe(device):
        probed.append(device.type)
        if device.type == "cuda":
            raise RuntimeError(NO_KERNEL)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backends, "probe_device", probe)
    return probed


def test_auto_falls_back_to_cpu_with_one_log_line(broken_gpu):
    lines = []
    assert backends.pick_device("auto", lines.append).type == "cpu"
    assert broken_gpu == ["cuda"]
    assert lines == ["intersr: the CUDA GPU failed at start (RuntimeError: CUDA error: no kernel "
                     "image is available for execution on the device); falling back to the CPU"]


def test_explicit_cuda_is_refused_with_the_reason(broken_gpu):
    with pytest.raises(ResourceError, match="no kernel image.*use --device cpu"):
        backends.pick_device("cuda", print)


def test_a_run_on_a_broken_gpu_finishes_on_the_cpu(broken_gpu, tmp_path, small_volume, capsys):
    out = tmp_path / "iso.nrrd"
    assert cli.main(["run", str(small_volume), str(out), "--adapt-steps", "2",
                     "--progress", "none"]) == 0
    err = capsys.readouterr().err
    assert err.count("falling back to the CPU") == 1
    assert "on cpu" in sitk.ReadImage(str(out)).GetMetaData("intersr_backend")


def test_probe_runs_on_the_cpu():
    backends.probe_device(torch.device("cpu"))  # the real probe: no error on a working device
