"""What the module panel shows, decided without Qt (the widget only applies it).

``panel_state`` maps widget object names (as in Resources/UI/InterSliceSR.ui) to Qt property
values. Keeping the decisions here lets them be tested headless and rendered with real Qt
widgets (Testing/test_slicer_qt_panel.py); InterSliceSR.py sets the properties as they come.
"""
from __future__ import annotations

from intersr import options

from .i18n import _

INPUT_WIDGETS = ("inputSelector", "targetSpacingSpinBox", "sliceThicknessSpinBox", "deviceComboBox",
                 "confidenceCheckBox")
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
                budget: str = "balanced", needs_install: bool = True, quick: bool = False,
                torch_ready: bool = True, installing: bool = False, probing: bool = False) -> dict:
    """Widget name -> {Qt property: value} for the current situation.

    ``info`` is a ``geometry.GridInfo`` for the selected input (None: no usable input);
    ``needs_install``: PyTorch or a required package is missing (or not known yet).
    ``quick``: no fine-tuning, so the fine-tuning settings do not apply.
    ``torch_ready``: PyTorch is installed (and not being installed): without it the run is
    the quick result (ONNX Runtime, no adaptation), offered at once; adaptation once it is in.
    ``installing``: a background install runs (Install disabled, "Cancel install" shown);
    ``probing``: the engine is being asked what PyTorch offers (Install disabled).
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
    quick_only = not torch_ready
    for name in INPUT_WIDGETS:
        state[name] = {"enabled": not running}
    state["quickCheckBox"] = {"enabled": not running and not quick_only}
    for name in FINE_TUNING_WIDGETS:
        state[name] = {"enabled": not running and not quick and not quick_only}
    state["budgetSecondsSpinBox"] = {"enabled": budget == "seconds" and not running and not quick and not quick_only}
    # "Dependencies installed" stays disabled: only a missing dependency makes it clickable,
    # and never while the engine is asked what it has or an install runs.
    if installing:
        text = _("Installing...")
    elif probing:
        text = _("Checking...")
    else:
        text = _("Install dependencies") if needs_install else _("Dependencies installed")
    state["installDependenciesButton"] = {"enabled": needs_install and not (running or installing or probing),
                                          "text": text}
    state["cancelInstallButton"] = {"visible": installing, "enabled": installing}
    if cancelling:
        state["applyButton"] = {"text": _("Cancelling..."), "enabled": False,
                                "toolTip": _("Stopping the engine and every process it started.")}
    elif running:
        state["applyButton"] = {"text": _("Cancel"), "enabled": True,
                                "toolTip": _("Stop the computation; nothing is added to the scene.")}
    else:
        ok = info is not None and not needs_spacing
        if not ok:
            tip = _("Select a thick-slice input volume.")
        elif quick_only:
            tip = _("PyTorch is not installed yet: the shipped network runs with ONNX Runtime, without "
                    "adaptation to this volume (seconds). Adaptation is offered once PyTorch is installed.")
        else:
            tip = _("Compute the isotropic volume in the background.")
        state["applyButton"] = {"text": _("Quick result") if quick_only else _("Apply"), "enabled": ok,
                                "toolTip": tip}
    return state


# ------------------------------------------------------------------------------ choices
def device_choices(system: str | None = None) -> tuple:
    """The devices offered on this platform. CUDA exists on Linux and Windows only; macOS gets
    the CPU. Apple's MPS is not offered: the engine has no MPS path, and whether this network
    (its attention and backward pass) runs correctly on MPS was never checked on a Mac."""
    import sys

    system = system or sys.platform
    if system == "darwin":
        return ("auto", "cpu")
    return ("auto", "cuda", "cpu")


def choice_labels() -> dict:
    """Combo box -> the translated label of each choice, by value. The parameter node keeps
    the values; the labels are only shown (Slicer's Choice connector reads the index)."""
    return {
        "deviceComboBox": {"auto": _("auto (GPU when it works, else CPU)"), "cuda": _("CUDA GPU"),
                           "cpu": _("CPU")},
        "budgetComboBox": {"fast": _("fast"), "balanced": _("balanced"), "best": _("best"),
                           "seconds": _("seconds (set below)")},
        "methodComboBox": {"self-supervised": _("self-supervised"), "vae-pairs": _("VAE pairs (Xuan et al.)"),
                           "vae-combined": _("self-supervised + VAE pairs")},
    }


def label_choices(gui, choices: dict | None = None) -> None:
    """Show the translated labels in the combo boxes of ``choices`` (name -> values in item
    order; default GUI_CHOICES) after the parameter node wrapper filled them with the values."""
    labels = choice_labels()
    choices = GUI_CHOICES if choices is None else choices
    for name, values in choices.items():
        widget = getattr(gui, name, None)
        if widget is None:
            continue
        for index, value in enumerate(values):
            label = labels.get(name, {}).get(value)
            if label is not None:
                widget.setItemText(index, label)


DEVICE_CHOICES = device_choices()
# Combo box -> its choice values in item order (the parameter node's Choice annotations).
GUI_CHOICES = {"deviceComboBox": DEVICE_CHOICES, "budgetComboBox": tuple(options.GUI_BUDGETS),
               "methodComboBox": tuple(options.GUI_METHODS)}
