"""The torch-free core: options declared once, the one grid rule, schema, package data, info."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ROOT, oblique_direction, sample_crop
from intersr.cli import app as cli
from intersr.volumes import grid
from intersr import options
from intersr import protocol
from intersr.bench.real import expected_grid
from intersr.errors import InputError
from intersr.resources import SAMPLE, models_dir
from intersr.volumes.geometry import geometry_of, output_geometry

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "InterSliceSR")}

# Runs a snippet with torch made unimportable, then checks torch never got into sys.modules.
NO_TORCH = textwrap.dedent("""
    import importlib.machinery, sys
    class _Block:  # torch looks installed (find_spec finds it) but cannot be imported
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                return importlib.machinery.ModuleSpec(name, self)
        def create_module(self, spec):
            raise ImportError("torch is blocked in this test")
        def exec_module(self, module):
            raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, _Block())
    exec(sys.argv[1])
    assert "torch" not in sys.modules, "torch was imported"
""")


def run_without_torch(code: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, code, *args], capture_output=True,
                          text=True, env=ENV, timeout=300, **kwargs)


# ------------------------------------------------------------------------------ options
def test_every_declared_option_is_a_flag_once():
    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    flags = [a.option_strings[0] for a in parser._actions if a.option_strings[:1] != ["-h"]]
    assert flags == [o.flag for o in options.OPTIONS if o.cli]
    for flag in ("--profile", "--method", "--backend", "--weights", "--budget"):
        assert flag in flags
    args = parser.parse_args([])
    run = options.from_namespace(args)
    assert (run.profile, run.method, run.backend, run.device) == ("auto", "self-supervised",
                                                                  "auto", "auto")


@pytest.mark.parametrize("flags, message", [
    (["--factor", "nan"], "--factor must be a finite number"),
    (["--spacing", "inf"], "--spacing must be a finite number"),
    (["--thickness", "-1"], "--thickness must be > 0"),
    (["--factor", "0.5"], "--factor must be >= 1"),
    (["--factor", "17"], "--factor must be <= 16"),
    (["--profile", "lorentz"], "unknown profile 'lorentz': use auto, gauss, box or sinc"),
    (["--method", "gan"], "unknown method 'gan': use self-supervised, vae-pairs or vae-combined"),
    (["--backend", "tensorrt"], "unknown backend 'tensorrt': use auto, torch or onnxruntime"),
    (["--adapt-seconds", "-5"], "--adapt-seconds must be >= 0"),
])
def test_bad_values_get_specific_messages(flags, message):
    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    with pytest.raises(InputError) as info:
        options.from_namespace(parser.parse_args(flags))
    assert message in str(info.value)


def test_engine_args_round_trip_through_the_parser():
    run = options.make(spacing=0.75, thickness=3.5, profile="box", method="vae-pairs",
                       backend="onnxruntime", device="cpu", adapt_seconds=12.5, seed=3,
                       force=True, weights="none")
    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    again = options.from_namespace(parser.parse_args(options.engine_args(run)))
    assert again == run
    with pytest.raises(InputError, match="give only one of --budget, --no-adapt"):
        options.make(budget="fast", no_adapt=True)
    with pytest.raises(InputError, match="unknown run option"):
        options.make(adapt_sekonds=3)


def test_budget_presets_are_per_device_and_balanced_is_the_default():
    default = options.make()
    assert options.budget_for(default, "cpu") == options.BUDGET_PRESETS["balanced"]["cpu"]
    assert options.budget_for(default, "cuda") == options.BUDGET_PRESETS["balanced"]["cuda"]
    # the GUI sends the preset's name, so the engine applies the same per-device numbers
    gui = options.from_parameters({"budget": "balanced", "targetSpacing": 0.0})
    assert options.budget_for(gui, "cuda") == options.budget_for(default, "cuda")
    assert options.budget_for(options.make(no_adapt=True), "cpu") == options.Budget(0.0, 0)


# ------------------------------------------------------------------------------ grid
def test_grid_counts_centres_strictly_inside_the_field_of_view():
    # 7 slices at x2.5: n*k = 17.5, an 18th centre would sit exactly on the edge -> 17
    assert grid.output_slice_count(7, 2.5) == 17
    assert grid.output_slice_count(8, 2.5) == 20
    assert grid.output_slice_count(10, 4) == 40
    assert grid.output_slice_count(7, 2.4) == 17  # 16.8: the 17th centre (16.5) is inside
    positions = grid.output_positions(7, 2.5)
    assert positions[-1] + 0.5 / 2.5 < 7 - 0.5  # the last output slab ends inside the input
    g = grid.plan((64, 64, 7), (1.0, 1.0, 2.5))
    assert g.output_size == (64, 64, 17) and g.factor == 2.5
    assert g.shift_mm == pytest.approx(-1.25 + 0.5)


@pytest.mark.parametrize("size, spacing, target, oblique", [
    ((40, 36, 7), (1.0, 1.0, 2.5), 1.0, False),  # the tie
    ((30, 9, 25), (0.8, 3.0, 0.8), None, True),  # slice axis y, oblique
    ((11, 30, 30), (4.0, 1.0, 1.0), 1.3, False),  # slice axis x, non-integer factor
    ((30, 30, 12), (1.0, 1.0, 3.0), None, True),
])
def test_bench_oracle_engine_and_lib_agree(size, spacing, target, oblique):
    image = sitk.Image(list(size), sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin((3.0, -7.5, 12.25))
    if oblique:
        image.SetDirection(oblique_direction())
    geometry = geometry_of(image)
    h = target or min(grid.inplane_spacings(spacing, geometry.slice_axis))
    engine = output_geometry(geometry, h)
    oracle = expected_grid(image, h)
    assert tuple(oracle.GetSize()) == engine.size
    np.testing.assert_allclose(oracle.GetOrigin(), engine.origin, atol=1e-9)
    np.testing.assert_allclose(oracle.GetSpacing(), engine.spacing)
    sys.path.insert(0, str(ROOT / "InterSliceSR"))
    from InterSliceSRLib.geometry import describe_grid
    assert describe_grid(size, spacing, target_spacing=target or 0).output_size == engine.size


def test_isotropic_and_too_large_factors_are_refused():
    with pytest.raises(InputError, match="already isotropic"):
        grid.plan((10, 10, 10), (1, 1, 1.1))
    with pytest.raises(InputError, match="beyond what the network supports"):
        grid.plan((10, 10, 10), (1, 1, 20), target_spacing=1.0)
    with pytest.raises(InputError, match="coarser than the slice spacing"):
        grid.plan((10, 10, 10), (1, 1, 3), target_spacing=4.0)


# ------------------------------------------------------------------------------ protocol
def test_progress_refuses_stages_outside_the_schema():
    from intersr.progress import Progress
    with pytest.raises(ValueError, match="add it to intersr.protocol.STAGES"):
        Progress("none").update("adpat", 0, 1)
    with pytest.raises(KeyError, match="not in the provenance schema"):
        protocol.provenance(weights="x")
    fields = protocol.provenance(method="m", factor="4")
    assert list(fields) == ["intersr_note", "intersr_method", "intersr_factor"]


# ------------------------------------------------------------------------------ torch-free
def test_help_info_and_slicer_lib_import_no_torch():
    help_ = run_without_torch("from intersr.cli import app as cli; cli.main(['--help'])")
    assert help_.returncode == 0 and "torch was imported" not in help_.stderr, help_.stderr
    assert "info" in help_.stdout and "train" in help_.stdout
    run_help = run_without_torch("from intersr.cli import app as cli\ntry: cli.main(['run', '--help'])\n"
                                 "except SystemExit: pass")
    assert run_help.returncode == 0, run_help.stderr
    assert "--backend" in run_help.stdout and "--profile" in run_help.stdout
    info = run_without_torch("import sys; from intersr.cli import app as cli; cli.main(['info', '--json'])")
    assert info.returncode == 0, info.stderr
    report = json.loads(info.stdout)
    assert report["torch"]["installed"]  # installed, asked in a subprocess, never imported here
    lib = run_without_torch("import sys; sys.path.insert(0, sys.argv[2]); "
                            "import InterSliceSRLib.geometry, InterSliceSRLib.logic",
                            str(ROOT / "InterSliceSR"))
    assert lib.returncode == 0, lib.stderr


def test_info_json_reports_versions_backends_devices_and_weights():
    proc = subprocess.run([sys.executable, "-m", "intersr", "info", "--json"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    import importlib.metadata
    assert info["packages"]["torch"] == importlib.metadata.version("torch")
    assert info["packages"]["numpy"] == np.__version__
    assert "torch" in info["backends"] and "cpu" in info["devices"]
    assert isinstance(info["gpus"], list)
    assert info["weights"]["ok"] and len(info["weights"]["sha256"]) == 64
    if info["torch"].get("cuda"):
        assert info["gpus"][0]["memory_gib"] > 0


# ------------------------------------------------------------------------------ package data
def test_weights_and_sample_are_package_data():
    package = ROOT / "InterSliceSR" / "intersr"
    assert models_dir() == package / "data" / "models"
    assert SAMPLE.is_file() and SAMPLE.parent == package / "data" / "sample"
    assert not (ROOT / "InterSliceSR" / "Resources" / "Models").exists()  # no second copy
    assert not (ROOT / "InterSliceSR" / "Resources" / "SampleData").exists()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"data/models/*"' in pyproject and '"data/sample/*"' in pyproject


def test_missing_or_altered_weights_are_an_error_not_a_scratch_run(tmp_path):
    source = tmp_path / "in.nrrd"
    sitk.WriteImage(sample_crop((24, 24, 8)), str(source))
    empty = tmp_path / "no-models"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "intersr", "run", str(source),
                           str(tmp_path / "o.nrrd"), "--no-adapt", "--progress", "jsonl"],
                          capture_output=True, text=True, timeout=300,
                          env={**ENV, "INTERSR_MODELS_DIR": str(empty)})
    assert proc.returncode == 4, proc.stderr
    event = json.loads(proc.stdout.splitlines()[-1])
    assert event["stage"] == "error" and "weights are missing" in event["message"]
    assert not (tmp_path / "o.nrrd").exists()
    # explicit --weights none trains from scratch, and says so in the provenance
    assert cli.main(["run", str(source), str(tmp_path / "s.nrrd"), "--weights", "none",
                     "--adapt-steps", "2", "--progress", "none"]) == 0
    header = sitk.ReadImage(str(tmp_path / "s.nrrd"))
    assert header.GetMetaData("intersr_weights_sha256").startswith("none")
