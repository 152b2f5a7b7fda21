"""The pip package as users get it: `pip wheel`, install it (not the repository), `intersr demo`.

Catches what an editable install hides: a subpackage or data file missing from the wheel, an
entry point that no longer resolves, code that reads files from the repository.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("volumes", "acquisition", "networks", "methods", "runners", "cli", "bench", "training")


def test_wheel_installs_and_runs_the_demo(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True, text=True)
    wheel = next((tmp_path / "dist").glob("intersr-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        assert f"intersr/{package}/__init__.py" in names, package
    for data in ("intersr/data/models/intersr_sliceinr.pt", "intersr/data/models/intersr_sliceinr.onnx",
                 "intersr/data/models/weights.json", "intersr/data/sample/KmeansTest_T1UCharRaw.nii.gz"):
        assert data in names, data
    assert "intersr.cli.app:main" in zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                    "--disable-pip-version-check", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)
    env = dict(os.environ, PYTHONPATH=str(site))
    out = tmp_path / "demo" / "sample_isotropic.nrrd"
    run = subprocess.run([sys.executable, "-c",
                          "import sys, intersr; assert intersr.__file__.startswith(sys.argv[1]), "
                          "intersr.__file__\nfrom intersr.cli.app import main\n"
                          "sys.exit(main(sys.argv[2:]))", str(site), "demo", "--output", str(out),
                          "--adapt-steps", "3", "--progress", "none"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    shipped = json.loads((site / "intersr/data/models/weights.json").read_text(encoding="utf-8"))["weights"][0]
    image = sitk.ReadImage(str(out))
    assert image.GetMetaData("intersr_weights_sha256") == shipped["sha256"]
    assert image.GetSize() == (128, 128, 93)
