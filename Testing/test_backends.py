"""Inference backends: ONNX Runtime agrees with torch, and runs with no torch installed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ROOT, sample_crop
from intersr.networks import backends
from intersr.errors import InputError, WeightsError
from intersr.networks.infer import super_resolve
from intersr.resources import models_dir, shipped_onnx
from intersr.volumes.read import to_volume

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "InterSliceSR")}

# torch is absent: importing it fails as it would on a machine where it was never installed.
WITHOUT_TORCH = textwrap.dedent("""
    import sys
    class _Absent:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, _Absent())
    from intersr.cli import app as cli
    code = cli.main(sys.argv[1:])
    assert "torch" not in sys.modules, "torch was imported"
    sys.exit(code)
""")


def psnr(reference: np.ndarray, estimate: np.ndarray) -> float:
    peak = float(np.abs(reference).max())
    mse = float(np.mean((reference - estimate) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def test_onnxruntime_and_torch_agree_on_the_shipped_network():
    from intersr.networks.weights import load_pretrained
    volume = to_volume(sample_crop((40, 36, 12), (40, 40, 24))).array
    volume = volume / np.percentile(volume, 99.5)
    positions = (np.arange(36) + 0.5) / 3.0 - 0.5  # x3
    path, sha, entry = shipped_onnx()
    torch_out = super_resolve(backends.TorchBackend(load_pretrained().model, "cpu"), volume,
                              positions, 3.0, 1.0)
    ort_out = super_resolve(backends.OrtBackend(path, "cpu"), volume, positions, 3.0, 1.0)
    assert torch_out.shape == ort_out.shape == (36, 36, 40)
    assert psnr(torch_out, ort_out) >= 50.0
    # factor and blur are graph inputs, not constants baked in at export
    other = super_resolve(backends.OrtBackend(path, "cpu"), volume, positions, 3.0, 0.5)
    assert psnr(ort_out, other) < 50.0


def test_stale_or_altered_onnx_is_refused(tmp_path):
    shutil.copytree(models_dir(), tmp_path / "models")
    folder = tmp_path / "models"
    manifest = json.loads((folder / "weights.json").read_text())
    onnx_file = folder / manifest["weights"][0]["onnx"]["file"]
    with open(onnx_file, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(WeightsError, match="altered or corrupted"):
        shipped_onnx(folder)
    manifest["weights"][0]["onnx"]["source_sha256"] = "0" * 64
    (folder / "weights.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="made from other weights"):
        shipped_onnx(folder)


def test_backend_choice_says_what_to_install():
    assert backends.choose("auto", adapting=False, torch_ok=False, ort_ok=True).backend == \
        "onnxruntime"
    assert backends.choose("auto", adapting=True, torch_ok=True, ort_ok=True).backend == "torch"
    with pytest.raises(InputError, match="give --no-adapt"):
        backends.choose("auto", adapting=True, torch_ok=False, ort_ok=True)
    with pytest.raises(InputError, match="onnxruntime is not installed"):
        backends.choose("onnxruntime", adapting=False, torch_ok=True, ort_ok=False)


def test_no_adapt_runs_on_onnxruntime_alone_without_torch(tmp_path):
    source = tmp_path / "in.nrrd"
    sitk.WriteImage(sample_crop((32, 32, 10)), str(source))
    target = tmp_path / "iso.nrrd"
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "run", str(source), str(target),
                           "--no-adapt", "--progress", "jsonl"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "inference with onnxruntime" in proc.stderr and "no fine-tuning" in proc.stderr
    done = json.loads(proc.stdout.splitlines()[-1])
    assert done["stage"] == "done"
    image = sitk.ReadImage(str(target))
    assert image.GetSize() == (32, 32, 15)
    backend = image.GetMetaData("intersr_backend")
    assert backend.startswith("onnxruntime") and "no fine-tuning" in backend
    manifest = json.loads((models_dir() / "weights.json").read_text())
    assert image.GetMetaData("intersr_weights_sha256") == manifest["weights"][0]["sha256"]
    # adaptation without torch: refused with what to do, nothing written
    refused = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "run", str(source),
                              str(tmp_path / "no.nrrd"), "--progress", "none"],
                             capture_output=True, text=True, env=ENV, timeout=300)
    assert refused.returncode == 2 and "give --no-adapt" in refused.stderr
    assert not (tmp_path / "no.nrrd").exists()


def test_adapted_network_runs_on_onnxruntime(tmp_path):
    from intersr.cli import app as cli
    source = tmp_path / "in.nrrd"
    sitk.WriteImage(sample_crop((32, 32, 10)), str(source))
    assert cli.main(["run", str(source), str(tmp_path / "o.nrrd"), "--backend", "onnxruntime",
                     "--adapt-steps", "3", "--progress", "none"]) == 0
    image = sitk.ReadImage(str(tmp_path / "o.nrrd"))
    assert image.GetMetaData("intersr_backend").startswith("onnxruntime")
    assert image.GetMetaData("intersr_adapt_steps") == "3"


def test_bench_backends_times_both_backends_on_the_same_volume(tmp_path):
    """`intersr bench --backends` (small size): both timings, their ratio and agreement."""
    from intersr.bench.backends import main
    args = type("Args", (), {"data": str(tmp_path / "no-data"), "sizes": "40,36,8",
                             "out": str(tmp_path / "out")})()
    assert main(args) == 0
    row = json.loads((tmp_path / "out" / "backends.json").read_text())["results"][0]
    assert row["size"] == [40, 36, 8] and row["output_slices"] == 32
    assert row["torch_s"] > 0 and row["onnxruntime_s"] > 0
    assert row["ratio_torch_over_ort"] == pytest.approx(row["torch_s"] / row["onnxruntime_s"],
                                                        rel=0.01)
    assert row["agreement_psnr_db"] >= 50
