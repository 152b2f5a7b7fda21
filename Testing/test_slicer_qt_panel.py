"""Issue 9 item 1 and the panel, with REAL Qt widgets (PySide6, offscreen) built from the
module's .ui file, a REAL MRML scene (slicer-core) and a model of parameterNodeWrapper's GUI
connection per Slicer version (Testing/helpers/pnw_model.py, written from Slicer's source).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "InterSliceSR"))
sys.path.insert(0, str(ROOT / "Testing" / "helpers"))

import slicer  # noqa: E402

from InterSliceSRLib.binding import ParameterNodeBinding  # noqa: E402
from InterSliceSRLib.panel import GUI_CHOICES, choice_labels, device_choices, label_choices, panel_state  # noqa: E402
import panel_qt  # noqa: E402
from pnw_model import VERSIONS, ModelLogic  # noqa: E402

OLD = ("5.6", "5.8")  # connectGui returns no tag


@pytest.fixture
def ui(qapp):
    root = panel_qt.load_panel()
    yield root
    root.deleteLater()


def choose(ui, combo, text):
    widget = panel_qt.child(ui, combo)
    widget.setCurrentIndex(widget.findText(text))


def shown(ui, combo):
    return panel_qt.child(ui, combo).currentText()


@pytest.mark.parametrize("version", VERSIONS)
def test_model_reproduces_the_template_defect(ui, version):
    """The template pattern (connect on enter, ``disconnectGui(tag)`` on exit) under the model:
    on 5.6/5.8 the choices reset to the first item when the module is entered again."""
    scene = slicer.vtkMRMLScene()
    logic = ModelLogic(scene, version, panel_qt.PARAMS)
    wrapper = logic.getParameterNode()
    tag = wrapper.connectGui(ui)                      # enter
    choose(ui, "budgetComboBox", "best")
    choose(ui, "deviceComboBox", "cpu")
    assert (wrapper.budget, wrapper.device) == ("best", "cpu")
    wrapper.disconnectGui(tag)                        # exit
    wrapper = logic.getParameterNode()
    wrapper.connectGui(ui)                            # enter again
    if version in OLD:
        assert (wrapper.budget, wrapper.device) == ("fast", "auto")
    else:
        assert (wrapper.budget, wrapper.device) == ("best", "cpu")


@pytest.mark.parametrize("version", VERSIONS)
def test_binding_keeps_choices_across_enter_exit_and_scene_close(ui, version):
    """What the module does (InterSliceSRWidget.enter/exit/onSceneStartClose/EndClose through
    ParameterNodeBinding): choices survive any number of enter/exit cycles on every version;
    after a scene close the new node gets the widgets and the old node is never written again."""
    scene = slicer.vtkMRMLScene()
    logic = ModelLogic(scene, version, panel_qt.PARAMS)
    binding = ParameterNodeBinding(ui)
    assert binding.bind(logic.getParameterNode())     # enter
    choose(ui, "budgetComboBox", "best")
    choose(ui, "deviceComboBox", "cpu")
    panel_qt.child(ui, "seedSpinBox").setValue(7)
    panel_qt.child(ui, "quickCheckBox").setChecked(True)
    for _cycle in range(3):                           # exit (nothing), enter again
        assert not binding.bind(logic.getParameterNode())
    node = binding.node
    assert (node.GetParameter("budget"), node.GetParameter("device"), node.GetParameter("seed")) == ("best", "cpu", "7")
    assert node.GetParameter("noAdapt") == "true" and panel_qt.child(ui, "quickCheckBox").isChecked()
    assert (shown(ui, "budgetComboBox"), shown(ui, "deviceComboBox")) == ("best", "cpu")
    choose(ui, "budgetComboBox", "fast")              # still connected after the cycles
    assert node.GetParameter("budget") == "fast"

    old_wrapper = binding.wrapper
    binding.bind(None)                                # scene start close
    assert not old_wrapper._parameterGUIs             # every connector detached, tag or not
    scene.Clear(0)                                    # the singleton parameter node is reset
    binding.bind(logic.getParameterNode())            # scene end close
    new = binding.node
    assert new.GetParameter("budget") == "balanced" and shown(ui, "budgetComboBox") == "balanced"
    choose(ui, "budgetComboBox", "seconds")
    choose(ui, "deviceComboBox", "cuda")
    assert (new.GetParameter("budget"), new.GetParameter("device")) == ("seconds", "cuda")
    assert len(binding.wrapper._parameterGUIs) == 1


@pytest.mark.parametrize("version", OLD)
def test_naive_unbind_leaves_connectors_attached_on_old_versions(ui, version):
    """Why binding.disconnect_gui exists: on 5.6/5.8 ``disconnectGui(None)`` detaches nothing,
    so the old wrapper would keep writing widget changes into its node."""
    scene = slicer.vtkMRMLScene()
    wrapper = ModelLogic(scene, version, panel_qt.PARAMS).getParameterNode()
    tag = wrapper.connectGui(ui)
    assert tag is None
    wrapper.disconnectGui(tag)
    assert len(wrapper._parameterGUIs) == 1
    choose(ui, "budgetComboBox", "best")
    assert wrapper.budget == "best"  # still connected


def test_module_widget_uses_the_binding():
    tree = ast.parse((ROOT / "InterSliceSR" / "InterSliceSR.py").read_text(encoding="utf-8"))
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    text = ast.unparse(tree)
    assert "disconnectGui" not in text and "connectGui" not in text  # only through the binding
    assert "self._binding.bind(inputParameterNode)" in ast.unparse(functions["setParameterNode"])
    exit_body = functions["exit"].body
    assert all(isinstance(s, (ast.Pass, ast.Expr)) for s in exit_body)  # keeps the connection
    assert "self.setParameterNode(None)" in ast.unparse(functions["onSceneStartClose"])


def _sample_node(scene):
    node = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(ROOT / "InterSliceSR" / "intersr" / "data" / "sample" / "KmeansTest_T1UCharRaw.nii.gz"))
    assert storage.ReadData(node)
    node.SetName("InterSliceSR T1 thick slices")
    return node


def build_rendered_panel(ui, running=False, first_use=False):
    """The panel as the module shows it with the embedded sample selected (``first_use``: no
    PyTorch yet, so the main button offers the quick result)."""
    from InterSliceSRLib import dependencies
    from InterSliceSRLib.geometry import describe_volume_node

    scene = slicer.vtkMRMLScene()
    node = _sample_node(scene)
    # as the module: the wrapper fills the combo boxes with values, then they show translated labels
    binding = ParameterNodeBinding(ui, after_connect=lambda root: label_choices(panel_qt.widgets(root)))
    binding.bind(ModelLogic(scene, "5.12", panel_qt.PARAMS).getParameterNode())
    panel_qt.child(ui, "inputSelector").setCurrentNodeName(node.GetName())
    info = describe_volume_node(node)
    panel_qt.apply_state(ui, panel_state(running=running, info=info, needs_install=first_use,
                                         torch_ready=not first_use))
    torch = {"installed": False} if first_use else {"installed": True, "version": "2.13.0", "cuda": False}
    panel_qt.child(ui, "torchLabel").setText(dependencies.format_torch_info({"torch": torch}))
    panel_qt.child(ui, "progressBar").setVisible(running)
    return info


def test_panel_renders_offscreen_with_the_sample(ui, tmp_path):
    info = build_rendered_panel(ui)
    assert panel_qt.child(ui, "outputGeometryLabel").text().startswith("128 x 128 x 93 voxels")
    assert panel_qt.child(ui, "sliceAxisLabel").text() == "K (coronal)"
    apply = panel_qt.child(ui, "applyButton")
    assert apply.isEnabled() and apply.text() == "Apply"
    install = panel_qt.child(ui, "installDependenciesButton")
    assert not install.isEnabled() and install.text() == "Dependencies installed"
    assert [panel_qt.child(ui, "budgetComboBox").itemText(i) for i in range(4)] == [
        "fast", "balanced", "best", "seconds (set below)"]
    assert info.output_size == (128, 128, 93)
    from intersr import options

    method = panel_qt.child(ui, "methodComboBox")
    labels = choice_labels()["methodComboBox"]
    assert [method.itemText(i) for i in range(method.count())] == [labels[m] for m in options.GUI_METHODS]
    quick = panel_qt.child(ui, "quickCheckBox")
    assert quick.isEnabled() and not quick.isChecked()
    path = panel_qt.render(ui, tmp_path / "panel.png")
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    assert image.width() >= 400 and image.height() >= 300
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 5  # text and widgets were drawn, not a blank rectangle


# ---------------------------------------------------------------- issue 27 item 5: devices, tr()
def test_device_choices_per_platform():
    assert device_choices("linux") == device_choices("win32") == ("auto", "cuda", "cpu")
    assert device_choices("darwin") == ("auto", "cpu")  # no CUDA on macOS; MPS not offered (docs/slicer.md)
    assert "mps" not in device_choices("darwin")
    module = ast.parse((ROOT / "InterSliceSR" / "InterSliceSR.py").read_text(encoding="utf-8"))
    text = ast.unparse(module)
    assert "Choice(list(DEVICE_CHOICES))" in text and "options.DEVICES" not in text
    assert "after_connect=label_choices" in text


def test_combo_items_are_translated_labels_and_the_node_keeps_values(ui):
    """After the wrapper fills a combo box with the choice values, the module shows labels
    through tr(); Slicer's Choice connector reads the index, so the node keeps the values."""
    scene = slicer.vtkMRMLScene()
    params = dict(panel_qt.PARAMS, device=(str, GUI_CHOICES["deviceComboBox"], "auto"))
    binding = ParameterNodeBinding(ui, after_connect=lambda root: label_choices(panel_qt.widgets(root)))
    binding.bind(ModelLogic(scene, "5.12", params).getParameterNode())
    device = panel_qt.child(ui, "deviceComboBox")
    labels = choice_labels()["deviceComboBox"]
    assert [device.itemText(i) for i in range(device.count())] == [labels[v] for v in GUI_CHOICES["deviceComboBox"]]
    choose(ui, "deviceComboBox", "CPU")
    assert binding.node.GetParameter("device") == "cpu" and shown(ui, "deviceComboBox") == "CPU"
    choose(ui, "budgetComboBox", "seconds (set below)")
    assert binding.node.GetParameter("budget") == "seconds"
    binding.bind(None)
    binding.bind(ModelLogic(scene, "5.12", params).getParameterNode())  # relabelled after each connection
    assert shown(ui, "deviceComboBox") == "CPU"


def test_every_choice_label_is_a_literal_tr_call():
    """Slicer's lupdate collects ``_("literal")`` calls: every label is one, every choice has one."""
    tree = ast.parse((ROOT / "InterSliceSR" / "InterSliceSRLib" / "panel.py").read_text(encoding="utf-8"))
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "choice_labels")
    values = [v for d in ast.walk(function) if isinstance(d, ast.Dict) for v in d.values if not isinstance(v, ast.Dict)]
    assert values and all(isinstance(v, ast.Call) and getattr(v.func, "id", "") == "_"
                          and isinstance(v.args[0], ast.Constant) for v in values)
    labels = choice_labels()
    for name, choices in GUI_CHOICES.items():
        assert set(choices) <= set(labels[name]), name


def test_first_use_panel_offers_the_quick_result(ui, tmp_path):
    build_rendered_panel(ui, first_use=True)
    apply = panel_qt.child(ui, "applyButton")
    assert apply.isEnabled() and apply.text() == "Quick result"
    assert not panel_qt.child(ui, "budgetComboBox").isEnabled() and not panel_qt.child(ui, "quickCheckBox").isEnabled()
    install = panel_qt.child(ui, "installDependenciesButton")
    assert install.isEnabled() and install.text() == "Install dependencies"
    assert panel_qt.child(ui, "torchLabel").text().startswith("PyTorch is not installed")


def test_index_screenshot_is_named_and_captioned_an_offscreen_render(qapp, tmp_path):
    """The Extensions Index screenshot is made by scripts/render_panel.py: its file name says
    what it is, and so does a caption drawn into its pixels (the index shows no caption)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import render_panel

    assert "offscreen-Qt-render" in render_panel.SCREENSHOT.name
    assert render_panel.SCREENSHOT.parent == ROOT / "Resources" / "Screenshots"
    assert "not a Slicer screenshot" in render_panel.CAPTION
    out = render_panel.compose(tmp_path / "shot.png")
    from PySide6.QtGui import QImage

    image = QImage(str(out))
    assert image.width() > 1000 and image.height() >= 800
    committed = QImage(str(render_panel.SCREENSHOT))
    assert not committed.isNull() and committed.width() == image.width()
