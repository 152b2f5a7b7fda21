"""What the module panel shows, decided without Qt (the widget only applies it).

``panel_state`` maps widget object names (as in Resources/UI/InterSliceSR.ui) to Qt property
values. Keeping the decisions here lets them be tested headless and rendered with real Qt
widgets (Testing/test_slicer_qt_panel.py); InterSliceSR.py sets the properties as they come.
"""
from __future__ import annotations

from .i18n import _

INPUT_WIDGETS = ("inputSelector", "targetSpacingSpinBox", "sliceThicknessSpinBox", "deviceComboBox")
FINE_TUNING_WIDGETS = ("methodComboBox", "budgetComboBox", "seedSpinBox")
GEOMETRY_LABELS = ("sliceAxisLabel", "inputGeometryLabel", "outputGeometryLabel", "memoryLabel")


def first_intensity_volume(scene):
    """The first scalar volume that is not a label map (a label map is a subclass of
    vtkMRMLScalarVolumeNode, so ``GetFirstNodeByClass`` may return one; the input selector
    hides them and Apply would fail)."""
    if scene is None:
        return None
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if not node.IsA("vtkMRMLLabelMapVolumeNode"):
            return node
    return None


def panel_state(*, running: bool, cancelling: bool = False, info=None, target_spacing: float = 0.0,
                budget: str = "balanced", needs_install: bool = True, quick: bool = False) -> dict:
    """Widget name -> {Qt property: value} for the current situation.

    ``info`` is a ``geometry.GridInfo`` for the selected input (None: no usable input);
    ``needs_install``: PyTorch or a required package is missing (or not known yet).
    ``quick``: no fine-tuning, so the fine-tuning settings do not apply.
    """
    state: dict = {}
    if info is None:
        for name in GEOMETRY_LABELS:
            state[name] = {"text": "-"}
    else:
        summary = info.summary()
        state["sliceAxisLabel"] = {"text": summary["slice_axis"]}
        state["inputGeometryLabel"] = {"text": summary["input"]}
        state["outputGeometryLabel"] = {"text": summary["output"]}
        state["memoryLabel"] = {"text": summary["memory"]}
    needs_spacing = info is not None and info.isotropic_input and not target_spacing
    if needs_spacing:
        state["outputGeometryLabel"] = {"text": _("input is already isotropic: set an output spacing")}
    for name in INPUT_WIDGETS:
        state[name] = {"enabled": not running}
    state["quickCheckBox"] = {"enabled": not running}
    for name in FINE_TUNING_WIDGETS:
        state[name] = {"enabled": not running and not quick}
    state["budgetSecondsSpinBox"] = {"enabled": budget == "seconds" and not running and not quick}
    # "Dependencies installed" stays disabled: only a missing dependency makes it clickable.
    state["installDependenciesButton"] = {
        "enabled": needs_install and not running,
        "text": _("Install dependencies") if needs_install else _("Dependencies installed"),
    }
    if cancelling:
        state["applyButton"] = {"text": _("Cancelling..."), "enabled": False,
                                "toolTip": _("Stopping the engine and every process it started.")}
    elif running:
        state["applyButton"] = {"text": _("Cancel"), "enabled": True,
                                "toolTip": _("Stop the computation; nothing is added to the scene.")}
    else:
        ok = info is not None and not needs_spacing
        state["applyButton"] = {
            "text": _("Apply"), "enabled": ok,
            "toolTip": _("Compute the isotropic volume in the background.") if ok
            else _("Select a thick-slice input volume."),
        }
    return state
