"""`intersr run` from the outside: bad input, the JSON-lines protocol, cancellation."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import ROOT, sample_crop
from intersr.cli import app as cli
from intersr import protocol

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "InterSliceSR")}


def write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def float_volume(array: np.ndarray, spacing=(1.0, 1.0, 3.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    return image


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (extra argv after INPUT OUTPUT, expected message), inputs written into tmp."""
    crop = sitk.Cast(sample_crop((24, 24, 8), (50, 50, 24)), sitk.sitkFloat32)
    nan = sitk.GetArrayFromImage(crop)
    nan[3, 4, 5] = np.nan
    labels = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 4, (8, 24, 24)).astype(np.uint8))
    labels.SetSpacing((1.0, 1.0, 3.0))
    iso = sitk.Image(crop)
    iso.SetSpacing((2.0, 2.0, 2.0))
    four_d = sitk.JoinSeries([crop, crop])
    vector = sitk.Compose([crop, crop])
    (tmp / "garbage.nrrd").write_bytes(b"this is not an image")
    return {
        "2d": ([str(write(crop[:, :, 3], tmp / "flat.nrrd"))], "2-D image"),
        "4d": ([str(write(four_d, tmp / "four.nrrd"))], "4-D image"),
        "vector": ([str(write(vector, tmp / "vector.nrrd"))], "vector image with 2 components"),
        "isotropic": ([str(write(iso, tmp / "iso.nrrd"))], "already isotropic"),
        "labels": ([str(write(labels, tmp / "labels.nrrd"))], "looks like a label map"),
        "nan": ([str(write(float_volume(nan), tmp / "nan.nrrd"))], "non-finite voxels"),
        "missing": ([str(tmp / "does_not_exist.nrrd")], "input not found"),
        "unreadable": ([str(tmp / "garbage.nrrd")], "cannot read"),
        "factor": ([str(write(crop, tmp / "ok.nrrd")), "--factor", "0.5"], "--factor must be >= 1"),
        "coarser": ([str(tmp / "ok.nrrd"), "--spacing", "5"], "coarser than the slice spacing"),
        "device": ([str(tmp / "ok.nrrd"), "--device", "tpu"], "unknown device 'tpu'"),
    }


CASES = ["2d", "4d", "vector", "isotropic", "labels", "nan", "missing", "unreadable", "factor",
         "coarser", "device"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_with_message_and_no_output(tmp_path, capsys, case):
    argv_extra, message = bad_inputs(tmp_path)[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = cli.main(["run", argv_extra[0], str(out_dir / "result.nrrd"), *argv_extra[1:],
                     "--no-adapt", "--progress", "none"])
    assert code != 0
    assert message in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []


def test_cuda_requested_without_gpu(tmp_path, capsys, small_volume):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code = cli.main(["run", str(small_volume), str(tmp_path / "o.nrrd"), "--device", "cuda",
                     "--progress", "none"])
    assert code == 3
    assert "no CUDA GPU is available" in capsys.readouterr().err


@pytest.mark.parametrize("output,message", [
    ("missing_folder/out.nrrd", "output folder does not exist"),
    ("out.png", "unsupported extension"),
    ("small.nrrd/out.nrrd", "output folder does not exist"),
])
def test_bad_output_is_refused_before_work(tmp_path, capsys, small_volume, output, message):
    code = cli.main(["run", str(small_volume), str(tmp_path / output), "--progress", "none"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_isotropic_input_allowed_with_factor(tmp_path):
    iso = sitk.Cast(sample_crop((24, 24, 8), (50, 50, 24)), sitk.sitkFloat32)
    iso.SetSpacing((2.0, 2.0, 2.0))
    source = write(iso, tmp_path / "iso.nrrd")
    assert cli.main(["run", str(source), str(tmp_path / "o.nrrd"), "--factor", "2",
                     "--no-adapt", "--progress", "none"]) == 0
    assert sitk.ReadImage(str(tmp_path / "o.nrrd")).GetSize() == (24, 24, 16)


def test_label_map_allowed_with_force(tmp_path):
    labels = sitk.GetImageFromArray(np.repeat(np.arange(4, dtype=np.uint8), 48).reshape(8, 4, 6))
    labels.SetSpacing((1.0, 1.0, 3.0))
    source = write(labels, tmp_path / "labels.nrrd")
    assert cli.main(["run", str(source), str(tmp_path / "o.nrrd"), "--force", "--no-adapt",
                     "--progress", "none"]) == 0


EVENT_TYPES = {"stage": str, "step": int, "steps": int, "loss": (float, type(None)),
               "eta_s": (float, int), "message": str, "output": str, "seconds": (float, int),
               "data_consistency_db": (float, int), "provenance": dict, "iteration": int}


def check_event(event: dict) -> None:
    assert event["stage"] in protocol.STAGES + protocol.TERMINAL
    for key, value in event.items():
        assert key in EVENT_TYPES, key
        assert isinstance(value, EVENT_TYPES[key]), (key, value)
    if event["stage"] not in protocol.TERMINAL:
        assert 0 <= event["step"] <= event["steps"]


def test_jsonl_protocol_success(tmp_path, small_volume):
    target = tmp_path / "iso.nrrd"
    proc = subprocess.run([sys.executable, "-m", "intersr", "run", str(small_volume), str(target),
                           "--adapt-steps", "4", "--progress", "jsonl"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    for event in events:
        check_event(event)
    stages = [e["stage"] for e in events]
    assert stages[0] == "load" and stages[-1] == "done"
    for stage in ("adapt", "infer", "check", "write"):
        assert stage in stages
    assert Path(events[-1]["output"]) == target.resolve()
    assert target.exists()
    assert events[-1]["provenance"]["intersr_adapt_steps"] == "4"


def test_jsonl_protocol_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "intersr", "run", str(tmp_path / "nope.nrrd"),
                           str(tmp_path / "o.nrrd"), "--progress", "jsonl"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["stage"] == "error"
    assert "input not found" in events[-1]["message"]
    check_event(events[-1])


def assert_sigterm_at_stage_leaves_nothing(volume: Path, out_dir: Path, extra: list[str],
                                           stage: str, wait_s: float) -> None:
    """SIGTERM a real `intersr run` once it reports `stage`: exit 130, a final cancelled
    error event, and nothing written to `out_dir`."""
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "intersr", "run", str(volume),
                             str(out_dir / "iso.nrrd"), *extra, "--adapt-seconds", "120",
                             "--progress", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + wait_s
    for line in proc.stdout:
        if json.loads(line)["stage"] == stage or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    last = json.loads(rest.strip().splitlines()[-1])
    assert last["stage"] == "error" and "cancelled" in last["message"]
    assert list(out_dir.iterdir()) == []


def test_sigterm_during_adaptation_leaves_nothing(tmp_path, small_volume):
    assert_sigterm_at_stage_leaves_nothing(small_volume, tmp_path / "out", [], "adapt", 120)


def write_dicom_series(image: sitk.Image, folder: Path, thickness: float,
                       extra: dict | None = None) -> None:
    """A minimal MR DICOM series (one file per slice) with SliceThickness set (and `extra`
    tags, "gggg|eeee": value, in every file). GDCM's writer leaves the process in the "C"
    locale (ASCII file encoding for later tests): the locale is restored afterwards."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    try:
        _write_dicom_series(image, folder, thickness, extra)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_series(image: sitk.Image, folder: Path, thickness: float,
                        extra: dict | None) -> None:
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    series = "1.2.826.0.1.3680043.2.1125.1.4242"
    for k in range(image.GetDepth()):
        piece = sitk.Cast(image[:, :, k], sitk.sitkInt16)
        origin = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "MR", "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
            "0020|000e": series, "0020|000d": series + ".1",
            "0008|0018": f"{series}.{k + 2}",
            "0020|0037": "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6],
                                                          direction[1], direction[4], direction[7])),
            "0020|0032": "\\".join(f"{v:.6f}" for v in origin),
            "0020|0013": str(k + 1),
            "0028|0030": "\\".join(f"{v:.6f}" for v in image.GetSpacing()[:2]),
            "0018|0050": f"{thickness:.6f}",
            **(extra or {}),
        }
        for key, value in tags.items():
            piece.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(piece)


def test_dicom_series_folder_uses_slice_thickness(tmp_path):
    image = sample_crop((24, 24, 8), (50, 50, 24))
    write_dicom_series(image, tmp_path / "series", thickness=2.4)
    target = tmp_path / "iso.nrrd"
    assert cli.main(["run", str(tmp_path / "series"), str(target), "--no-adapt",
                     "--profile", "gauss", "--progress", "none"]) == 0
    out = sitk.ReadImage(str(target))
    assert float(out.GetMetaData("intersr_thickness_mm")) == pytest.approx(2.4)
    assert out.GetMetaData("intersr_profile").startswith("gauss, FWHM 2.4 mm (forced)")
    assert out.GetSize() == (24, 24, 12)
    assert out.GetSpacing()[2] == pytest.approx(2.0, abs=1e-4)


def test_too_little_memory_is_refused_before_work(tmp_path, capsys, small_volume, monkeypatch):
    import psutil

    class Tight:
        available = 64 * 2**20

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tight())
    code = cli.main(["run", str(small_volume), str(tmp_path / "o.nrrd"), "--progress", "none"])
    assert code == 3
    assert "GB of memory but only" in capsys.readouterr().err
    assert not (tmp_path / "o.nrrd").exists()
