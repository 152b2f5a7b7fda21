"""The Slicer module's decisions, checked without Slicer: the Lib pieces it delegates to (real
MRML from slicer-core, Slicer's own ``tryWithErrorDisplay``), and what the module file itself
must (not) contain. One test per defect of issue 9 that is not exercised elsewhere.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "InterSliceSR"
MODULE_FILE = MODULE_DIR / "InterSliceSR.py"
sys.path.insert(0, str(MODULE_DIR))
sys.path.insert(0, str(ROOT / "scripts"))

import slicer  # noqa: E402  (slicer-core wheel)
import slicer.util  # noqa: E402

from InterSliceSRLib import dependencies, panel  # noqa: E402

TREE = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
FUNCTIONS = {n.name: n for n in ast.walk(TREE) if isinstance(n, ast.FunctionDef)}


def calls(tree, attr):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr == attr]


def test_module_file_stays_small():
    assert len(MODULE_FILE.read_text(encoding="utf-8").splitlines()) < 600


def test_no_undefined_or_unused_names_in_code_that_only_runs_inside_slicer():
    """InterSliceSR.py's widget code never runs here: pyflakes catches the NameError kind
    (a missing import, a misspelt name) before a user does."""
    files = [MODULE_FILE, *sorted((MODULE_DIR / "InterSliceSRLib").glob("*.py"))]
    result = subprocess.run([sys.executable, "-m", "pyflakes", *map(str, files)],
                            capture_output=True, text=True)
    problems = [line for line in result.stdout.splitlines()
                if line.startswith(str(MODULE_FILE)) or "imported but unused" not in line]  # Lib re-exports
    assert not problems and not result.stderr, result.stdout + result.stderr


# ---------------------------------------------------------------- item 11: annotations
def test_parameter_node_annotations_are_all_consumed():
    """parameterNodeWrapper (5.6 - 5.12, wrapper.py ``_processClass``) logs "Unused
    annotations" for every annotation that is not a validator, serializer or Default -
    ``Decimals`` is one (it only configures a GUI connector); set decimals in the .ui."""
    node = next(n for n in ast.walk(TREE) if isinstance(n, ast.ClassDef) and n.name == "InterSliceSRParameterNode")
    consumed = {"WithinRange", "Choice", "Minimum", "Maximum", "Default"}
    for field in (n for n in node.body if isinstance(n, ast.AnnAssign)):
        if isinstance(field.annotation, ast.Subscript) and ast.unparse(field.annotation.value) == "Annotated":
            extras = field.annotation.slice.elts[1:]
            names = {ast.unparse(e.func) for e in extras if isinstance(e, ast.Call)}
            assert names <= consumed, (field.target.id, names - consumed)
    ui = ET.parse(MODULE_DIR / "Resources" / "UI" / "InterSliceSR.ui").getroot()
    decimals = {w.get("name"): int(p.find("number").text) for w in ui.iter("widget")
                for p in w.findall("property") if p.get("name") == "decimals"}
    assert decimals == {"targetSpacingSpinBox": 3, "sliceThicknessSpinBox": 3, "budgetSecondsSpinBox": 0}


# ---------------------------------------------------------------- item 12: start-up imports
def test_loading_the_module_imports_no_numpy_simpleitk_or_torch():
    imports = [n for n in TREE.body if isinstance(n, ast.ImportFrom)
               and n.module and n.module.split(".")[0] in ("InterSliceSRLib", "intersr")]
    assert "InterSliceSRLib.geometry" not in {n.module for n in imports}  # lazy: when a volume is shown
    code = ("import sys\n" + "".join(ast.unparse(n) + "\n" for n in imports)
            + "heavy = sorted({'numpy', 'SimpleITK', 'torch', 'scipy'} & set(sys.modules))\n"
            + "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=MODULE_DIR,
                   env={**os.environ, "PYTHONPATH": str(MODULE_DIR)})


# ---------------------------------------------------------------- item 13: translations
def _is_tr(node) -> bool:
    """``_("literal")`` or ``_("literal").format(...)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        node = node.func.value
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_"
            and isinstance(node.args[0], ast.Constant))


def _visible_literals(tree):
    """String literals (and f-strings) a user sees: assigned to .text/.toolTip/.format, passed
    to a dialog or tryWithErrorDisplay."""
    dialogs = {"errorDisplay", "confirmOkCancelDisplay", "confirmYesNoDisplay", "tryWithErrorDisplay",
               "infoDisplay", "warningDisplay"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "attr", None) in ("text", "toolTip", "format")
                                                for t in node.targets):
            yield node.value
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in dialogs and node.args:
            yield node.args[0]


def _untranslated_words(node):
    """Literal text with words in it that is not inside a ``_()`` call."""
    if _is_tr(node):
        return
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if re.search(r"[A-Za-z]{2,}", node.value):
            yield node.value
        return
    for child in ast.iter_child_nodes(node):
        if isinstance(node, ast.Call) and child is node.func:
            continue  # method names (e.g. .replace) are code, not text
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "replace", "get", "join"):
            continue  # arguments of string plumbing, not text shown
        yield from _untranslated_words(child)


def test_user_visible_strings_are_translatable():
    assert "from slicer.i18n import tr as _" in MODULE_FILE.read_text(encoding="utf-8")
    module_init = next(n for n in ast.walk(TREE) if isinstance(n, ast.ClassDef) and n.name == "InterSliceSR")
    assigns = {ast.unparse(n.targets[0]): n.value for n in ast.walk(module_init) if isinstance(n, ast.Assign)}
    category = assigns["self.parent.categories"].elts[0]
    assert ast.unparse(category) == "translate('qSlicerAbstractCoreModule', 'Filtering')"
    for key in ("self.parent.title", "self.parent.helpText", "self.parent.acknowledgementText"):
        assert _is_tr(assigns[key]), key
    for value in _visible_literals(TREE):
        for words in _untranslated_words(value):
            pytest.fail(f"untranslated text {words!r} in {ast.unparse(value)}")
    # the Lib's panel texts go through its own translation marker
    panel_tree = ast.parse((MODULE_DIR / "InterSliceSRLib" / "panel.py").read_text(encoding="utf-8"))
    for node in ast.walk(panel_tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value in ("text", "toolTip") \
                        and isinstance(value, ast.Constant) and value.value not in ("-",):
                    pytest.fail(f"untranslated panel text {value.value!r}")
    ui = ET.parse(MODULE_DIR / "Resources" / "UI" / "InterSliceSR.ui").getroot()
    for prop in ui.iter("property"):
        string = prop.find("string")
        if prop.get("name") in ("text", "toolTip", "placeholderText") and string is not None:
            assert string.get("notr") != "true", prop.get("name")


def test_lib_translation_marker_is_identity_headless():
    from InterSliceSRLib.i18n import _

    assert _("Apply") == "Apply"


# ---------------------------------------------------------------- item 14: default input
def test_label_map_never_becomes_the_default_input():
    scene = slicer.vtkMRMLScene()
    labels = scene.AddNode(slicer.vtkMRMLLabelMapVolumeNode())
    intensity = scene.AddNode(slicer.vtkMRMLScalarVolumeNode())
    # the defect: a label map IS a vtkMRMLScalarVolumeNode, so the template's choice picks it
    assert scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode") is labels
    assert panel.first_intensity_volume(scene) is intensity
    only_labels = slicer.vtkMRMLScene()
    only_labels.AddNode(slicer.vtkMRMLLabelMapVolumeNode())
    assert panel.first_intensity_volume(only_labels) is None
    assert not calls(TREE, "GetFirstNodeByClass")
    assert calls(FUNCTIONS["initializeParameterNode"], "first_intensity_volume") or any(
        getattr(c.func, "id", None) == "first_intensity_volume" for c in ast.walk(FUNCTIONS["initializeParameterNode"])
        if isinstance(c, ast.Call))


# ---------------------------------------------------------------- item 15: install button
def test_dependencies_installed_button_stays_disabled_after_gui_updates():
    for running in (False, True):
        state = panel.panel_state(running=running, needs_install=False)
        assert state["installDependenciesButton"] == {"enabled": False, "text": "Dependencies installed"}
    assert panel.panel_state(running=False, needs_install=True)["installDependenciesButton"]["enabled"]
    assert not panel.panel_state(running=True, needs_install=True)["installDependenciesButton"]["enabled"]
    cancelling = panel.panel_state(running=True, cancelling=True)["applyButton"]
    assert cancelling["enabled"] is False and cancelling["text"] == "Cancelling..."


# ---------------------------------------------------------------- item 3: tryWithErrorDisplay
class _App:
    """Stand-in for slicer.app: only what tryWithErrorDisplay asks."""

    def __init__(self, testing):
        self.testing = testing

    def testingEnabled(self):
        return self.testing


def test_try_with_error_display_shows_then_reraises(monkeypatch):
    """Slicer's own tryWithErrorDisplay (same code in 5.6 - 5.13): it shows the error and
    RE-RAISES, so a ``return False`` after the ``with`` block never runs."""
    shown = []
    monkeypatch.setattr(slicer, "app", _App(testing=False), raising=False)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: shown.append(text))

    def naive():
        with slicer.util.tryWithErrorDisplay("Failed to start."):
            raise RuntimeError("boom")
        return False  # what the module used to rely on

    with pytest.raises(RuntimeError, match="boom"):
        naive()
    assert shown == ["Failed to start.\n\nboom"]


def test_module_catches_what_try_with_error_display_reraises():
    """Every ``with tryWithErrorDisplay`` in the module sits in a try/except that restores the
    GUI (progress bar, status) instead of leaking the exception."""
    withs = [n for n in ast.walk(TREE) if isinstance(n, ast.With)
             and any("tryWithErrorDisplay" in ast.unparse(i.context_expr) for i in n.items)]
    assert len(withs) >= 1
    tries = [n for n in ast.walk(TREE) if isinstance(n, ast.Try)]
    for node in withs:
        owner = [t for t in tries if node in t.body]
        assert owner, f"line {node.lineno}: tryWithErrorDisplay outside try/except"
        handlers = [ast.unparse(h.type) for h in owner[0].handlers]
        assert "Exception" in handlers, handlers
    start_handler = next(t for t in tries if any("logic.start" in ast.unparse(w) for w in t.body))
    assert "progressBar.setVisible(False)" in ast.unparse(start_handler.handlers[0])


# ---------------------------------------------------------------- items 7, 8, 9: dependencies
PLAN = {"torch": True, "packages": ["psutil>=5.8"], "blocker": None}
# One question, declining, testing mode and the Intel-Mac refusal of ``start_install``, and the
# background install itself: Testing/test_slicer_installer.py.


def test_restart_needed_only_when_a_loaded_package_changed(monkeypatch):
    monkeypatch.delitem(sys.modules, "psutil", raising=False)
    assert not dependencies.restart_needed(["psutil>=5.8"], dependencies.imported_packages())
    import psutil  # noqa: F401  (now loaded: replacing it needs a restart)

    assert dependencies.restart_needed(["psutil>=5.8"], dependencies.imported_packages())
    assert not dependencies.restart_needed([dependencies.ONNX_REQUIREMENT], dependencies.imported_packages())


def test_module_asks_about_restart_once_and_never_in_testing_mode():
    text = MODULE_FILE.read_text(encoding="utf-8")
    assert text.count("confirmYesNoDisplay(") == 1 and text.count("slicer.util.restart()") == 1
    finished = FUNCTIONS["_installFinished"]
    guard = next(n for n in ast.walk(finished) if isinstance(n, ast.If) and "restart_needed" in ast.unparse(n.test))
    assert "not slicer.app.testingEnabled()" in ast.unparse(guard.test)
    # Apply asks no question of its own before installing (the install asks once)
    assert not calls(FUNCTIONS["onApplyButton"], "confirmOkCancelDisplay")
    # the install runs in the background: the module never calls an installer in-process
    assert "start_install" in ast.unparse(FUNCTIONS["installDependencies"])
    for name in ("pip_install", "pip_ensure", "installTorch", "launchConsoleProcess"):
        assert name not in text, name


def test_intel_mac_with_numpy_2_refuses_torch_with_a_clear_message():
    message = dependencies.torch_blocker("darwin", "x86_64", "2.0.2")
    assert message and "Intel Mac" in message and "numpy < 2" in message and "2.0.2" in message
    assert dependencies.torch_blocker("darwin", "x86_64", "1.26.4") is None
    assert dependencies.torch_blocker("darwin", "arm64", "2.0.2") is None
    assert dependencies.torch_blocker("linux", "x86_64", "2.0.2") is None


def test_docs_say_the_install_runs_in_the_background():
    """The install no longer goes through PyTorchUtils.installTorch (which ran on the GUI thread
    and imported torch into Slicer): docs and code say what happens now."""
    for path in (ROOT / "docs" / "slicer.md", MODULE_FILE, MODULE_DIR / "InterSliceSRLib" / "dependencies.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"torch (is )?never imported", text), path
    docs = (ROOT / "docs" / "slicer.md").read_text(encoding="utf-8")
    assert "background" in docs and "light-the-torch" in docs and "Quick result" in docs


def test_self_test_skips_engine_runs_without_torch():
    run = FUNCTIONS["runTest"]
    body = [ast.unparse(s) for s in run.body]
    gate = next(i for i, s in enumerate(body) if "torch_installed()" in s)
    assert "return" in body[gate]
    engine_tests = {"test_SampleResultNode", "test_CancelAddsNothing", "test_FailureAddsNothing"}
    for i, line in enumerate(body):
        if any(t in line for t in engine_tests):
            assert i > gate, line
    assert any("test_SampleAndInputChecks" in line for line in body[:gate])
    without = ast.unparse(FUNCTIONS["_runWithoutTorch"])
    assert "find_spec('onnxruntime')" in without and "SKIPPED" in without
    assert "self.test_QuickResultNode()" in without
    assert "adaptSteps=0" in ast.unparse(FUNCTIONS["test_QuickResultNode"])
    assert "psutil" not in ast.unparse(next(n for n in ast.walk(TREE) if isinstance(n, ast.ClassDef)
                                            and n.name == "InterSliceSRTest"))


# ---------------------------------------------------------------- item 10: Extensions Index
def test_extension_index_metadata():
    import check_extension_index as check

    assert check.check() == []
    meta = json.loads((ROOT / "docs" / "extensions-index" / "InterSliceSR.json").read_text(encoding="utf-8"))
    assert meta["build_dependencies"] == ["PyTorch"]
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    shots = check.cmake_set(cmake, "EXTENSION_SCREENSHOTURLS").split()
    assert shots and all(("-Slicer-" in s) or ("offscreen-Qt-render" in s) for s in shots)
    contributors = check.cmake_set(cmake, "EXTENSION_CONTRIBUTORS")
    assert "developers" not in contributors and contributors == "InterSliceSR project (independent)"
    # the module says the same, and README documents the top-level Resources/ the URLs point into
    assert "InterSliceSR project (independent)" in MODULE_FILE.read_text(encoding="utf-8")
    layout = (ROOT / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1]
    tree = layout.split("```")[1]
    top = [line for line in tree.splitlines() if line and not line.startswith(" ")]
    assert any(line.startswith("Resources/ ") for line in top)  # the top-level Resources/ of the URLs
    assert "  InterSliceSR.png" in tree and "  Screenshots/" in tree


def test_extension_index_check_catches_the_old_metadata(tmp_path):
    import check_extension_index as check

    (tmp_path / "docs" / "extensions-index").mkdir(parents=True)
    (tmp_path / "docs" / "extensions-index" / "InterSliceSR.json").write_text(json.dumps(
        {"scm_url": "https://github.com/intersr/SlicerInterSliceSR", "category": "Filtering",
         "build_dependencies": []}))
    (tmp_path / "LICENSE").write_text("x")
    (tmp_path / "CMakeLists.txt").write_text(
        'project(InterSliceSR)\nset(EXTENSION_HOMEPAGE "https://github.com/intersr/SlicerInterSliceSR")\n'
        'set(EXTENSION_CATEGORY "Filtering")\nset(EXTENSION_CONTRIBUTORS "InterSliceSR contributors")\n'
        'set(EXTENSION_ICONURL "https://raw.githubusercontent.com/intersr/SlicerInterSliceSR/main/Resources/InterSliceSR.png")\n'
        'set(EXTENSION_SCREENSHOTURLS "")\nset(EXTENSION_DEPENDS "PyTorch")\n')
    problems = "\n".join(check.check(tmp_path))
    assert "EXTENSION_SCREENSHOTURLS is empty" in problems
    assert "EXTENSION_CONTRIBUTORS" in problems and "build_dependencies must list PyTorch" in problems
    assert "InterSliceSR.png does not exist" in problems
    (tmp_path / "CMakeLists.txt").write_text(
        'project(InterSliceSR)\nset(EXTENSION_CONTRIBUTORS "InterSliceSR developers (InterSliceSR project)")\n'
        'set(EXTENSION_CATEGORY "Filtering")\n')
    assert "placeholder entries: InterSliceSR developers" in "\n".join(check.check(tmp_path))


# ---------------------------------------------------------------- quick mode (no fine-tuning)
def test_quick_mode_needs_onnxruntime_instead_of_torch(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(dependencies, "missing_requirements", lambda path=None: [])
    monkeypatch.setattr(dependencies, "torch_blocker", lambda: "no torch on this Mac.")
    monkeypatch.setattr(dependencies, "torch_installed", lambda: False)
    monkeypatch.setattr(dependencies.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    full = dependencies.install_plan(quick=False)  # ONNX Runtime first: the quick result while torch installs
    assert full["torch"] and full["packages"] == [dependencies.ONNX_REQUIREMENT]
    assert "Quick: no fine-tuning" in full["blocker"]
    quick = dependencies.install_plan(quick=True)
    assert quick == {"torch": False, "packages": [dependencies.ONNX_REQUIREMENT], "blocker": None}
    monkeypatch.setattr(dependencies, "torch_installed", lambda: True)
    assert dependencies.install_plan(quick=True) == {"torch": False, "packages": [], "blocker": None}


def test_quick_mode_disables_the_fine_tuning_settings():
    state = panel.panel_state(running=False, quick=True, budget="seconds")
    for name in ("methodComboBox", "budgetComboBox", "seedSpinBox", "budgetSecondsSpinBox"):
        assert state[name]["enabled"] is False, name
    assert state["quickCheckBox"]["enabled"] and state["deviceComboBox"]["enabled"]
    assert panel.panel_state(running=False, budget="seconds")["budgetSecondsSpinBox"]["enabled"]


def test_every_gui_parameter_reaches_the_engine():
    """Each parameter-node field (but the input node) is a RunParameters field, so
    ``RunParameters.fromParameterNode`` carries it to the engine's command line."""
    from dataclasses import fields
    from types import SimpleNamespace

    from InterSliceSRLib.logic import RunParameters

    node = next(n for n in ast.walk(TREE) if isinstance(n, ast.ClassDef) and n.name == "InterSliceSRParameterNode")
    gui = {n.target.id for n in node.body if isinstance(n, ast.AnnAssign)} - {"inputVolume"}
    assert gui <= {f.name for f in fields(RunParameters)}, gui - {f.name for f in fields(RunParameters)}
    values = dict(targetSpacing=0.0, sliceThickness=0.0, device="cpu", budget="balanced", budgetSeconds=120.0,
                  seed=3, method="vae-pairs", noAdapt=False, confidenceMap=False)
    assert set(values) == gui
    args = RunParameters.fromParameterNode(SimpleNamespace(**values)).engineArgs("i", "o", python="py")
    assert args[args.index("--method") + 1] == "vae-pairs" and args[args.index("--seed") + 1] == "3"
    quick = RunParameters.fromParameterNode(SimpleNamespace(**dict(values, noAdapt=True))).engineArgs(
        "i", "o", python="py")
    assert "--no-adapt" in quick and "--budget" not in quick
    from InterSliceSRLib import confidence  # the checkbox: a flag the logic adds with its temp folder
    mapped = RunParameters.fromParameterNode(SimpleNamespace(**dict(values, confidenceMap=True)))
    assert confidence.engine_flags(mapped, "/t") == ["--confidence", "/t/confidence.nrrd"]
    assert "--confidence" not in mapped.engineArgs("i", "o", python="py")
