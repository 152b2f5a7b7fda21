"""The Slicer side of InterSliceSR against a REAL MRML scene (slicer-core wheel) and the REAL
engine subprocess (``python -m intersr run``), headless: no Qt, no Slicer application.

What the ``slicer-core`` wheel gives headless: ``import slicer`` exposes the MRML / logic VTK
classes (vtkMRMLScene, vtkMRMLScalarVolumeNode, vtkMRMLVolumeArchetypeStorageNode,
vtkMRMLSubjectHierarchyNode, ...) and Slicer's own ``slicer.util`` (pure-Python functions work:
arrayFromVolume, updateVolumeFromArray, launchConsoleProcess with useStartupEnvironment=False).
There is no ``slicer.app`` and no ``slicer.mrmlScene``: tests create their own vtkMRMLScene, and
subject-hierarchy items are not created automatically (the application's plugins do that), so
the tests create them explicitly, as the application would.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "InterSliceSR"
sys.path.insert(0, str(MODULE_DIR))

import slicer  # noqa: E402  (slicer-core wheel)
import slicer.util  # noqa: E402
import vtk  # noqa: E402

from InterSliceSRLib import geometry, progress  # noqa: E402
from InterSliceSRLib.engine_process import build_engine_args  # noqa: E402
from InterSliceSRLib.logic import InterSliceSRLogicCore, RunError, RunParameters  # noqa: E402

from intersr.runners import memory  # noqa: E402
from intersr import options
from intersr import protocol
from intersr.errors import InputError  # noqa: E402
from intersr.resources import SAMPLE  # noqa: E402
TOL_MM = 1e-4
TORCH_FREE_CORE = {"intersr.options", "intersr.volumes.grid", "intersr.runners.memory", "intersr.protocol",
                   "intersr.errors", "intersr.resources", "intersr.volumes.filecheck"}
# Engine subpackages that stay in the pip package but are not shipped in the Slicer extension.
TOOLING = {"bench", "training"}


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture
def scene():
    s = slicer.vtkMRMLScene()
    yield s
    s.Clear(True)


@pytest.fixture(scope="module")
def crop():
    """A 32x32x8 crop of the real sample scan (2 x 2 x 3 mm, int16, ~110 grey values)."""
    image = sitk.ReadImage(str(SAMPLE))
    return sitk.GetArrayFromImage(image[48:80, 48:80, 27:35]).astype(np.int16)  # (k, j, i)


@pytest.fixture
def tmp_root(tmp_path):
    root = tmp_path / "tmp-root"
    root.mkdir()
    return root


def rotation(ax_deg, ay_deg, az_deg):
    ax, ay, az = np.radians([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def add_volume(scene, array, spacing=(2.0, 2.0, 3.0), origin=(-31.5, 12.25, 40.0),
               directions=None, name="T1 thick", folder="Study"):
    """A scalar volume node with display node, inside a subject-hierarchy folder."""
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    scene.AddNode(node)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    if directions is not None:
        node.SetIJKToRASDirections(*[float(v) for v in np.asarray(directions).ravel()])
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(321.0, 123.0)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    folderItem = sh.CreateFolderItem(sh.GetSceneItemID(), folder)
    sh.CreateItem(folderItem, node)
    return node


def ijk_to_ras(node):
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def node_count(scene):
    return scene.GetNumberOfNodes()


def assert_clean(tmp_root):
    leftovers = list(Path(tmp_root).rglob("*"))
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def engine_alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ---------------------------------------------------------------------------- success paths
def test_result_node_axis_aligned_with_adaptation(scene, crop, tmp_root):
    node = add_volume(scene, crop)
    before = slicer.util.arrayFromVolume(node).copy()
    before_matrix = ijk_to_ras(node)
    expected = np.array(geometry.expected_output_ijk_to_ras(before_matrix, node.GetSpacing()))
    info = geometry.describe_volume_node(node)
    assert (info.slice_axis, info.plane, info.output_size) == (2, "axial", (32, 32, 12))
    count = node_count(scene)
    events = []

    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    out = logic.process(node, device="cpu", adaptSteps=2, seed=3, on_event=events.append)

    assert logic.state == "succeeded"
    assert out is not None and out.GetScene() is scene
    assert out.GetName() == "T1 thick (InterSliceSR synthesised)"
    assert out.GetID() != node.GetID()
    # new volume node + its display node; nothing else (no storage node left behind)
    assert node_count(scene) == count + 2
    assert out.GetStorageNode() is None
    assert out.GetImageData().GetDimensions() == (32, 32, 12)
    np.testing.assert_allclose(ijk_to_ras(out), expected, atol=TOL_MM)
    np.testing.assert_allclose(out.GetSpacing(), (2.0, 2.0, 2.0), atol=1e-6)
    # the input is untouched
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), before)
    np.testing.assert_allclose(ijk_to_ras(node), before_matrix, atol=0)
    assert node.GetName() == "T1 thick"
    # beside the input in the subject hierarchy, same window/level
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert sh.GetItemParent(sh.GetItemByDataNode(out)) == sh.GetItemParent(sh.GetItemByDataNode(node))
    display = out.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (321.0, 123.0)
    assert not display.GetAutoWindowLevel()
    # provenance in the description and attributes
    description = out.GetDescription()
    for key in ("method", "version", "weights_sha256", "factor", "thickness", "adapt_steps"):
        assert re.search(rf"^{key}\w*: ", description, re.M), (key, description)
    assert "loss" in description
    assert out.GetAttribute("InterSliceSR.factor") == "1.5"
    # the progress stream drove the state; the result is plausible (not blank)
    stages = [e["stage"] for e in events]
    for stage in ("start", "load", "adapt", "infer", "write", "done", "result"):
        assert stage in stages, stages
    assert logic.progress.percent == 100
    result = slicer.util.arrayFromVolume(out)
    assert result.dtype == before.dtype
    assert abs(float(result.mean()) - float(before.mean())) < 0.1 * float(before.mean())
    assert_clean(tmp_root)


def test_result_node_oblique_direction_and_target_spacing(scene, crop, tmp_root):
    R = rotation(20, -35, 50)
    node = add_volume(scene, crop, spacing=(2.0, 2.0, 3.0), origin=(10.0, -20.5, 33.3), directions=R)
    expected = np.array(geometry.expected_output_ijk_to_ras(ijk_to_ras(node), node.GetSpacing(), 1.0))
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    out = logic.process(node, spacing=1.0, device="cpu", adaptSteps=0)
    assert out.GetImageData().GetDimensions() == (32, 32, 24)
    np.testing.assert_allclose(ijk_to_ras(out), expected, atol=TOL_MM)
    directions = vtk.vtkMatrix4x4()
    out.GetIJKToRASDirectionMatrix(directions)
    np.testing.assert_allclose([[directions.GetElement(r, c) for c in range(3)] for r in range(3)], R, atol=1e-6)
    assert_clean(tmp_root)


def test_slice_axis_along_i(scene, crop, tmp_root):
    """Thick axis first (I): the grid helper and the engine agree on the axis and the size."""
    array = np.ascontiguousarray(np.transpose(crop, (2, 1, 0)))  # (k, j, i) = (32, 32, 8): I has 8 samples
    node = add_volume(scene, array, spacing=(3.0, 2.0, 2.0))
    info = geometry.describe_volume_node(node)
    assert info.slice_axis == 0 and info.output_size == (12, 32, 32)
    out = InterSliceSRLogicCore(tempRoot=str(tmp_root)).process(node, device="cpu", adaptSteps=0)
    assert out.GetImageData().GetDimensions() == info.output_size
    np.testing.assert_allclose(
        ijk_to_ras(out), geometry.expected_output_ijk_to_ras(ijk_to_ras(node), node.GetSpacing()), atol=TOL_MM)
    assert_clean(tmp_root)


# ---------------------------------------------------------------------------- cancel
def test_cancel_mid_run_and_second_start_refused(scene, crop, tmp_root):
    node = add_volume(scene, crop)
    before = slicer.util.arrayFromVolume(node).copy()
    count = node_count(scene)
    events = []
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    logic.start(node, RunParameters(device="cpu", adaptSteps=1_000_000), on_event=events.append)
    try:
        pid = logic.enginePid
        assert logic.isRunning and engine_alive(pid)
        assert any(Path(tmp_root).iterdir())  # the temporary input exists while running
        # one run at a time, on this logic and on any other
        with pytest.raises(RuntimeError, match="already running"):
            logic.start(node, RunParameters(device="cpu", adaptSteps=0))
        with pytest.raises(RuntimeError, match="already running"):
            InterSliceSRLogicCore(tempRoot=str(tmp_root)).process(node, device="cpu", adaptSteps=0)
        # wait until the engine is fine-tuning, then cancel
        deadline = time.monotonic() + 60
        while logic.poll() == "running" and logic.progress.stage != "adapt":
            assert time.monotonic() < deadline, "engine never reached the adapt stage"
            time.sleep(0.05)
        assert logic.state == "running" and logic.progress.stage == "adapt"
    finally:
        cancelled = logic.cancel()
    assert cancelled and logic.state == "cancelled"
    assert events[-1]["stage"] == "cancelled"
    assert not engine_alive(pid)
    assert node_count(scene) == count
    assert scene.GetFirstNodeByName("T1 thick (InterSliceSR synthesised)") is None
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), before)
    assert_clean(tmp_root)
    assert not InterSliceSRLogicCore.anyRunning()
    assert logic.poll() == "cancelled" and logic.cancel() is False
    # after a cancel a new run may start
    out = InterSliceSRLogicCore(tempRoot=str(tmp_root)).process(node, device="cpu", adaptSteps=0)
    assert out.GetName() == "T1 thick (InterSliceSR synthesised)"
    assert_clean(tmp_root)


# ---------------------------------------------------------------------------- failure paths
def test_engine_failure_label_map_like_input(scene, tmp_root):
    labels = np.zeros((8, 32, 32), np.int16)
    labels[2:6, 8:24, 8:24] = 1
    labels[3:5, 12:20, 12:20] = 2
    node = add_volume(scene, labels, name="labels")
    count = node_count(scene)
    events = []
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    with pytest.raises(RunError, match="label map") as info:
        logic.process(node, device="cpu", adaptSteps=0, on_event=events.append)
    assert logic.state == "failed"
    engine_errors = [e["message"] for e in events if e["stage"] == "error"]
    assert engine_errors and str(info.value) == engine_errors[-1] == logic.errorMessage
    assert events[-1]["stage"] == "failed"
    assert node_count(scene) == count
    assert_clean(tmp_root)
    assert not InterSliceSRLogicCore.anyRunning()


def test_engine_failure_isotropic_without_factor(scene, crop, tmp_root):
    node = add_volume(scene, crop, spacing=(1.0, 1.0, 1.0))
    count = node_count(scene)
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    with pytest.raises(RunError, match="isotropic"):
        logic.process(node, device="cpu", adaptSteps=0)
    assert node_count(scene) == count
    assert_clean(tmp_root)


def test_engine_crash_without_json_is_reported(scene, crop, tmp_root, monkeypatch):
    """An engine that dies without a JSON error event (e.g. a traceback): its last error line
    is surfaced, nothing is added, temporary files go."""
    node = add_volume(scene, crop)
    count = node_count(scene)
    fake = tmp_root.parent / "fakebin"
    (fake / "intersr").mkdir(parents=True)
    (fake / "intersr" / "__init__.py").write_text("")
    (fake / "intersr" / "__main__.py").write_text(
        "import sys\nprint('starting', flush=True)\n"
        "sys.stderr.write('Traceback...\\nMemoryError: simulated: cannot allocate 9 GiB\\n')\nsys.exit(7)\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    import InterSliceSRLib.engine_process as ep

    monkeypatch.setattr(ep, "MODULE_DIR", str(fake))
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    with pytest.raises(RunError, match="exited with code 7") as info:
        logic.process(node, device="cpu", adaptSteps=0)
    assert "MemoryError: simulated" in str(info.value)
    assert node_count(scene) == count
    assert_clean(tmp_root)


def test_invalid_inputs_refused_before_launch(scene, tmp_root):
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    with pytest.raises(ValueError):
        logic.start(None)
    empty = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(empty)
    with pytest.raises(ValueError, match="no image data"):
        logic.start(empty)
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    scene.AddNode(labelmap)
    slicer.util.updateVolumeFromArray(labelmap, np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="label map"):
        logic.start(labelmap)
    assert not InterSliceSRLogicCore.anyRunning()
    assert_clean(tmp_root)


# ---------------------------------------------------------------------------- pure helpers
def test_engine_command_line():
    args = build_engine_args("in.nrrd", "out.nrrd", python="py", spacing=1.25, thickness=4,
                             device="cuda", budget="best", seed=7)
    assert args == ["py", "-m", "intersr", "run", "in.nrrd", "out.nrrd", "--spacing", "1.25",
                    "--thickness", "4", "--device", "cuda", "--budget", "best", "--seed", "7",
                    "--progress", "jsonl"]
    # the GUI's "seconds" budget becomes an engine time budget
    p = RunParameters(budget="seconds", budgetSeconds=42)
    args = p.engineArgs("i", "o", python="py")
    assert args[args.index("--adapt-seconds") + 1] == "42" and "--budget" not in args
    # an explicit no-adaptation overrides the GUI's preset
    assert "--no-adapt" in RunParameters(noAdapt=True, budget="best").engineArgs("i", "o", python="py")
    assert RunParameters(adaptSteps=0, budget="best").toOptions().adapt_steps == 0
    # the GUI's method reaches the engine
    args = RunParameters(method="vae-pairs").engineArgs("i", "o", python="py")
    assert args[args.index("--method") + 1] == "vae-pairs"
    p = RunParameters(targetSpacing=0, sliceThickness=0, budget="fast", factor=2.0, force=True)
    args = p.engineArgs("i", "o", python="py")
    assert "--spacing" not in args and "--thickness" not in args
    assert args[args.index("--factor") + 1] == "2" and "--force" in args
    with pytest.raises(InputError, match="unknown device 'tpu': use auto, cuda or cpu"):
        build_engine_args("i", "o", python="py", device="tpu")
    with pytest.raises(InputError, match="positive number of seconds"):
        RunParameters(budget="seconds", budgetSeconds=0).engineArgs("i", "o", python="py")
    with pytest.raises(InputError, match="finite"):
        build_engine_args("i", "o", python="py", spacing=float("nan"))


def test_run_parameters_are_derived_from_the_one_declaration():
    from dataclasses import fields

    names = {f.name for f in fields(RunParameters)}
    assert names == {options.param_name(o) for o in options.ENGINE_OPTIONS} | {"budgetSeconds",
                                                                            "confidenceMap"}
    assert {"targetSpacing", "sliceThickness", "profile", "method", "backend", "weights"} <= names


def test_progress_parsing_is_tolerant():
    assert protocol.parse_line('{"stage": "adapt", "step": 3, "steps": 10, "loss": 0.5}\n')["step"] == 3
    assert protocol.parse_line("intersr: warning\n") == {"stage": "log", "message": "intersr: warning"}
    assert protocol.parse_line('{"not": "an event"}')["stage"] == "log"
    assert protocol.parse_line("{broken json}")["stage"] == "log"
    state = progress.ProgressState()
    state.update({"stage": "load", "step": 1, "steps": 1})
    state.update({"stage": "adapt", "step": 50, "steps": 100, "loss": 0.02, "eta_s": 75})
    assert 40 <= state.percent <= 45
    assert state.text() == "Fine-tuning on this volume 50/100, loss 0.0200, ETA 1 min 15 s"
    state.update({"stage": "log", "message": "hello"})
    assert state.log[-1] == "hello" and state.stage == "adapt"
    state.update({"stage": "done", "output": "x", "seconds": 1})
    assert state.percent == 100


def test_grid_and_memory_estimate():
    info = geometry.describe_grid((256, 256, 40), (0.9, 0.9, 5.0))
    assert info.slice_axis == 2 and info.output_size == (256, 256, 222)
    assert geometry.describe_grid((10, 10, 10), (1, 1, 1.1)).isotropic_input
    coronal = geometry.describe_grid((128, 128, 62), (2, 2, 3), ((1, 0, 0), (0, 0, 1), (0, -1, 0)))
    assert coronal.plane == "coronal" and coronal.output_size == (128, 128, 93)
    assert coronal.summary()["memory"] == geometry.format_bytes(coronal.estimated_memory_bytes)
    # 7 slices at x2.5: the one grid rule gives 17 (an 18th centre would sit on the edge)
    assert geometry.describe_grid((64, 64, 7), (1.0, 1.0, 2.5)).output_size == (64, 64, 17)


def test_gui_memory_estimate_is_the_engines_refusal_threshold():
    """The number the module shows is the one the engine enforces (one function)."""
    from intersr.errors import ResourceError
    from intersr.volumes.grid import plan

    info = geometry.describe_grid((256, 256, 40), (0.9, 0.9, 5.0))
    needed = info.estimated_memory_bytes
    grid = plan((256, 256, 40), (0.9, 0.9, 5.0))
    assert needed == memory.required_bytes(grid)
    assert memory.check(grid, available=needed) == needed  # exactly enough: runs
    with pytest.raises(ResourceError, match="needs about"):
        memory.check(grid, available=needed - 1)  # one byte less: refused


# ---------------------------------------------------------------------------- static checks
def _module_sources():
    files = [MODULE_DIR / "InterSliceSR.py", *sorted((MODULE_DIR / "InterSliceSRLib").glob("*.py"))]
    return {f: ast.parse(f.read_text(), str(f)) for f in files}


def _slicer_util_names_used(tree):
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            v = node.value
            if v.attr == "util" and isinstance(v.value, ast.Name) and v.value.id == "slicer":
                used.add(node.attr)
        if isinstance(node, ast.ImportFrom) and node.module == "slicer.util":
            used.update(alias.name for alias in node.names)
    return used


def test_slicer_util_calls_exist_in_supported_slicer_versions():
    listed = {line.strip() for line in (ROOT / "Testing" / "slicer_util_names.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert "launchConsoleProcess" in listed and len(listed) > 150
    used = set()
    for path, tree in _module_sources().items():
        names = _slicer_util_names_used(tree)
        missing = names - listed
        assert not missing, f"{path.name} uses slicer.util names not in every supported release: {missing}"
        used |= names
    assert {"tryWithErrorDisplay", "setSliceViewerLayers", "loadUI"} <= used
    # and the headless wheel really has the ones the Lib calls at run time
    for name in ("tryWithErrorDisplay", "arrayFromVolume", "updateVolumeFromArray"):
        assert hasattr(slicer.util, name)


def test_lib_is_qt_free():
    for path, tree in _module_sources().items():
        if path.name == "InterSliceSR.py":
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not set(names) & {"qt", "ctk", "PythonQt", "slicer_qt", "torch"}, (path, names)
            if isinstance(node, ast.ImportFrom) and names == ["intersr"]:  # module or name in it
                # only the engine's torch-free core may be imported into Slicer
                modules = {node.module} if node.module in TORCH_FREE_CORE else \
                    {f"{node.module}.{a.name}" for a in node.names}
                assert modules <= TORCH_FREE_CORE, (path, node.module)


def test_module_ui_and_parameter_node_agree():
    tree = ast.parse((MODULE_DIR / "InterSliceSR.py").read_text())
    parameter_node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
                          and n.name == "InterSliceSRParameterNode")
    assert any(getattr(d, "id", None) == "parameterNodeWrapper" for d in parameter_node.decorator_list)
    fields = {n.target.id for n in parameter_node.body if isinstance(n, ast.AnnAssign)}
    assert fields >= {"inputVolume", "targetSpacing", "sliceThickness", "device", "budget",
                      "budgetSeconds", "seed", "method", "noAdapt", "confidenceMap"}
    ui = ET.parse(MODULE_DIR / "Resources" / "UI" / "InterSliceSR.ui").getroot()
    bound = {}
    for widget in ui.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget.get("class")
    assert set(bound) == fields, (bound, fields)
    # widget classes that parameterNodeWrapper can connect in Slicer 5.6 and later
    assert bound["inputVolume"] == "qMRMLNodeComboBox"
    assert bound["targetSpacing"] == bound["sliceThickness"] == bound["budgetSeconds"] == "QDoubleSpinBox"
    assert bound["device"] == bound["budget"] == bound["method"] == "QComboBox"
    assert bound["seed"] == "QSpinBox"
    assert bound["noAdapt"] == bound["confidenceMap"] == "QCheckBox"
    names = {w.get("name") for w in ui.iter("widget")}
    for required in ("applyButton", "progressBar", "logTextEdit", "installDependenciesButton",
                     "sliceAxisLabel", "inputGeometryLabel", "outputGeometryLabel", "memoryLabel",
                     "torchLabel"):
        assert required in names, required


def test_cmake_lists_every_module_file():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    for package in ("InterSliceSRLib", "intersr"):
        for path in sorted((MODULE_DIR / package).rglob("*.py")):
            name = path.relative_to(MODULE_DIR).as_posix()
            listed = f"  {name}\n" in text
            tooling = package == "intersr" and path.parent.name in TOOLING
            assert listed == (not tooling), name
    for item in ("${MODULE_NAME}.py", "Resources/UI/${MODULE_NAME}.ui", "Resources/Icons/${MODULE_NAME}.png",
                 "Resources/requirements.txt", "WITH_GENERIC_TESTS", "slicer_add_python_unittest",
                 "intersr/data/models/", "intersr/data/sample/"):
        assert item in text, item
    top = (ROOT / "CMakeLists.txt").read_text()
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "DEPENDS"):
        assert f"set(EXTENSION_{key} " in top, key
    assert "add_subdirectory(InterSliceSR)" in top


def test_icons_are_128_png():
    for icon in (MODULE_DIR / "Resources" / "Icons" / "InterSliceSR.png", ROOT / "Resources" / "InterSliceSR.png"):
        data = icon.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (128, 128), icon


def test_requirements_never_touch_slicer_bundled_packages():
    lines = [line.split("#")[0].strip() for line in
             (MODULE_DIR / "Resources" / "requirements.txt").read_text().splitlines()]
    names = {re.split(r"[<>=!~ \[;]", line)[0].lower() for line in lines if line}
    assert names and not names & {"numpy", "simpleitk", "vtk", "torch"}


def test_dependency_helpers_and_background_torch_probe(tmp_path):
    from InterSliceSRLib import dependencies
    from InterSliceSRLib.engine_process import EngineProcess

    assert dependencies.missing_requirements() == []  # the test environment has scipy and psutil
    req = tmp_path / "requirements.txt"
    req.write_text("# comment\npsutil>=1.0\nno-such-package-intersr-test>=1\nscipy>=999\n")
    assert dependencies.missing_requirements(str(req)) == ["no-such-package-intersr-test>=1", "scipy>=999"]
    constraints = dependencies.write_constraints(str(tmp_path))
    pins = Path(constraints).read_text().split()
    assert any(p.startswith("numpy==") for p in pins) and any(p.startswith("SimpleITK==") for p in pins)
    assert dependencies.torch_installed()
    # checked without importing torch into Slicer's process (a fresh interpreter: other test
    # modules of this session import torch themselves)
    check = ("import sys; from InterSliceSRLib import dependencies as d; "
             "assert d.torch_installed(); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", check], check=True, cwd=MODULE_DIR,
                   env={**os.environ, "PYTHONPATH": str(MODULE_DIR)})
    probe = EngineProcess(dependencies.info_args(sys.executable))
    assert probe.wait_finished(timeout=120) and probe.returncode == 0
    info = [dependencies.info_from_event(e) for e in probe.events()]
    info = [i for i in info if i][-1]
    import importlib.metadata

    assert info["torch"]["installed"] and info["torch"]["version"] == importlib.metadata.version("torch")
    assert info["weights"]["ok"] and "cpu" in info["devices"]
    text = dependencies.format_torch_info(info)
    assert text.startswith("PyTorch ") and ("CUDA not available" in text or "available:" in text)
    assert dependencies.format_torch_info({"torch": {"installed": False}}).startswith("PyTorch is not installed")


# ---------------------------------------------------------------------------- DICOM in and out
class FakeDicomDatabase:
    """What the logic uses of Slicer's ctkDICOMDatabase: instance UID -> file."""

    def __init__(self, files):
        self.files = files
        self.asked = []

    def fileForInstance(self, uid):
        self.asked.append(uid)
        return self.files.get(uid, "")


def write_dicom_header(path, thickness, between, description):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", generate_uid()
    ds.Modality, ds.SeriesDescription = "MR", description
    ds.SliceThickness, ds.SpacingBetweenSlices = str(thickness), str(between)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(str(path), enforce_file_format=True)
    assert pydicom.dcmread(str(path)).SliceThickness == thickness


def test_dicom_thickness_reaches_the_engine_and_result_is_marked(scene, crop, tmp_root, tmp_path):
    node = add_volume(scene, crop)
    header = tmp_path / "IM0001.dcm"
    write_dicom_header(header, 2.4, 3.0, "T1 AX 3mm")
    node.SetAttribute("DICOM.instanceUIDs", "1.2.3.4 1.2.3.5")
    events = []
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    logic.dicomDatabase = FakeDicomDatabase({"1.2.3.4": str(header)})
    out = logic.process(node, device="cpu", adaptSteps=0, on_event=events.append)
    assert logic.dicomDatabase.asked == ["1.2.3.4"]
    said = [e["message"] for e in events if e["stage"] == "log" and "DICOM" in e.get("message", "")]
    assert said and "'T1 AX 3mm': SliceThickness 2.4 mm, SpacingBetweenSlices 3 mm" in said[0]
    assert "--thickness 2.4" in said[0]
    command = next(e["message"] for e in events if e["stage"] == "start")
    assert "--thickness 2.4" in command
    # the engine follows this process, and writes its temporary result uncompressed
    assert f"--parent-pid {os.getpid()}" in command and "--uncompressed" in command
    assert out.GetAttribute("InterSliceSR.thickness_mm") == "2.4"  # the engine used it
    assert out.GetAttribute("DICOM.SeriesDescription") == "T1 AX 3mm - InterSliceSR synthesised"
    # a thickness set by the user wins over the header, and the log says so
    events.clear()
    out2 = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    out2.dicomDatabase = logic.dicomDatabase
    node2 = out2.process(node, thickness=3.0, device="cpu", adaptSteps=0, on_event=events.append)
    assert node2.GetAttribute("InterSliceSR.thickness_mm") == "3"
    assert any("thickness set (3 mm) is used" in e.get("message", "") for e in events)
    assert_clean(tmp_root)


def test_no_dicom_database_or_missing_file_changes_nothing(scene, crop, tmp_root):
    node = add_volume(scene, crop)
    node.SetAttribute("DICOM.instanceUIDs", "9.9.9")
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    logic.dicomDatabase = FakeDicomDatabase({})  # the file is not in the database any more
    events = []
    out = logic.process(node, device="cpu", adaptSteps=0, on_event=events.append)
    command = next(e["message"] for e in events if e["stage"] == "start")
    assert "--thickness" not in command
    assert out.GetAttribute("DICOM.SeriesDescription") == "T1 thick - InterSliceSR synthesised"
    assert_clean(tmp_root)


def test_result_node_unique_name_description_and_dicom_export_attributes(scene, crop, tmp_root):
    node = add_volume(scene, crop)
    first = InterSliceSRLogicCore(tempRoot=str(tmp_root)).process(node, device="cpu", adaptSteps=0)
    second = InterSliceSRLogicCore(tempRoot=str(tmp_root)).process(node, device="cpu", adaptSteps=0)
    assert first.GetName() == "T1 thick (InterSliceSR synthesised)"
    assert second.GetName() != first.GetName()
    assert second.GetName().startswith("T1 thick (InterSliceSR synthesised)")
    assert scene.GetNodesByName(first.GetName()).GetNumberOfItems() == 1
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for out in (first, second):
        description = out.GetDescription()
        assert description.startswith("Synthesised by InterSliceSR")
        assert re.search(r"^weights_sha256: [0-9a-f]{64}$", description, re.M)
        item = sh.GetItemByDataNode(out)
        for holder in (lambda name: out.GetAttribute(name),
                       lambda name: sh.GetItemAttribute(item, name)):
            assert holder("DICOM.ImageType") == "DERIVED\\SECONDARY"
            assert holder("DICOM.SeriesDescription") == "T1 thick - InterSliceSR synthesised"
            derivation = holder("DICOM.DerivationDescription")
            assert derivation.startswith("Slices synthesised by InterSliceSR") and "not acquired" in derivation
            assert "weights_sha256=" + out.GetAttribute("InterSliceSR.weights_sha256") in derivation
        # in the input's study (folder), so an export keeps the study and makes a new series
        assert sh.GetItemParent(item) == sh.GetItemParent(sh.GetItemByDataNode(node))
    assert_clean(tmp_root)


def test_confidence_map_is_a_second_node_overlaid_on_the_result(scene, crop, tmp_root):
    """The "Confidence map" checkbox: "<result> confidence" on the result's grid, its own
    provenance, a colour table, linked to the result; the result itself is unchanged."""
    from InterSliceSRLib import confidence

    node = add_volume(scene, crop)
    count = node_count(scene)
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    out = logic.process(node, device="cpu", adaptSteps=0, confidenceMap=True)
    conf = logic.confidenceNode
    assert conf is not None and conf.GetScene() is scene and conf is not out
    assert conf.GetName() == f"{out.GetName()} confidence"
    assert node_count(scene) == count + 4  # two volumes, two display nodes
    assert conf.GetImageData().GetDimensions() == out.GetImageData().GetDimensions()
    np.testing.assert_allclose(ijk_to_ras(conf), ijk_to_ras(out), atol=TOL_MM)
    values = slicer.util.arrayFromVolume(conf)
    assert values.dtype == np.float32 and values.min() >= 0 and values.max() < 1
    assert not np.array_equal(values, slicer.util.arrayFromVolume(out))
    display = conf.GetDisplayNode()
    assert display.GetColorNodeID() == confidence.COLOR_NODE_ID and not display.GetAutoWindowLevel()
    assert "expected absolute error" in conf.GetAttribute("InterSliceSR.map")
    assert conf.GetAttribute("InterSliceSR.weights_sha256") == out.GetAttribute("InterSliceSR.weights_sha256")
    assert conf.GetAttribute("InterSliceSR.confidenceOf") == out.GetID()
    assert out.GetAttribute("InterSliceSR.confidenceNode") == conf.GetID()
    assert "not an image of the anatomy" in conf.GetDescription().lower()
    assert_clean(tmp_root)
    # without the checkbox: no second node
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_root))
    logic.process(node, device="cpu", adaptSteps=0)
    assert logic.confidenceNode is None
