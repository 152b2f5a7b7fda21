"""The module panel from Resources/UI/InterSliceSR.ui built with REAL Qt widgets (PySide6),
with stand-ins only for the Slicer/CTK classes it uses (ctkCollapsibleButton,
qMRMLNodeComboBox, qMRMLCheckableNodeComboBox, qMRMLWidget). Used by the Qt tests and scripts/render_panel.py.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UI_FILE = ROOT / "InterSliceSR" / "Resources" / "UI" / "InterSliceSR.ui"

def _params():
    """The parameter node's fields as the model wrapper needs them: kind, choices, default
    (choices from the engine's one declaration, as InterSliceSR.py takes them)."""
    import sys

    sys.path.insert(0, str(ROOT / "InterSliceSR"))
    from intersr import options

    return {
        "targetSpacing": (float, None, 0.0),
        "sliceThickness": (float, None, 0.0),
        "device": (str, options.DEVICES, "auto"),
        "budget": (str, options.GUI_BUDGETS, options.DEFAULT_PRESET),
        "budgetSeconds": (float, None, 120.0),
        "seed": (int, None, 0),
        "method": (str, options.GUI_METHODS, "self-supervised"),
        "noAdapt": (bool, None, False),
        "confidenceMap": (bool, None, False),
    }


PARAMS = _params()


def _classes():
    from PySide6.QtCore import Property
    from PySide6.QtWidgets import QComboBox, QGroupBox, QWidget

    class CollapsibleButtonStandIn(QGroupBox):
        """ctkCollapsibleButton stand-in: a titled group ("text" and "collapsed" properties)."""

        def _text(self):
            return self.title()

        def _set_text(self, value):
            self.setTitle(value)

        def _collapsed(self):
            return False

        def _set_collapsed(self, value):
            pass

        text = Property(str, _text, _set_text)
        collapsed = Property(bool, _collapsed, _set_collapsed)

    class NodeComboBoxStandIn(QComboBox):
        """qMRMLNodeComboBox stand-in: shows the selected node's name."""

        def setCurrentNodeName(self, name):
            self.clear()
            self.addItem(name)

    class CheckableNodeComboBoxStandIn(QComboBox):
        """qMRMLCheckableNodeComboBox stand-in: shows the checked nodes' names."""

        def setCheckedNodeNames(self, names):
            self.clear()
            self.addItem(", ".join(names) if names else "(none)")

    return {"ctkCollapsibleButton": CollapsibleButtonStandIn, "qMRMLNodeComboBox": NodeComboBoxStandIn,
            "qMRMLCheckableNodeComboBox": CheckableNodeComboBoxStandIn, "qMRMLWidget": QWidget}


def load_panel():
    """The panel's root widget, loaded from the module's .ui file."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader

    standins = _classes()

    class Loader(QUiLoader):
        def createWidget(self, className, parent=None, name=""):
            if className in standins:
                widget = standins[className](parent)
                widget.setObjectName(name)
                return widget
            return super().createWidget(className, parent, name)

    ui_file = QFile(str(UI_FILE))
    ui_file.open(QFile.ReadOnly)
    try:
        root = Loader().load(ui_file)
    finally:
        ui_file.close()
    assert root is not None, "QUiLoader could not build the panel"
    return root


def child(root, name):
    from PySide6.QtWidgets import QWidget

    widget = root.findChild(QWidget, name)
    assert widget is not None, f"no widget named {name!r} in {UI_FILE.name}"
    return widget


def widgets(root):
    """The panel's named children as attributes, like ``slicer.util.childWidgetVariables``."""
    from types import SimpleNamespace

    from PySide6.QtWidgets import QWidget

    return SimpleNamespace(**{w.objectName(): w for w in root.findChildren(QWidget) if w.objectName()})


def apply_state(root, state: dict) -> None:
    """Set the properties ``panel_state`` decided, as InterSliceSR.py does with PythonQt."""
    for name, properties in state.items():
        widget = child(root, name)
        for key, value in properties.items():
            widget.setProperty(key, value)
            # "visible" reads False while the panel itself is not shown: check what was set
            shown = (not widget.isHidden()) if key == "visible" else widget.property(key)
            assert shown == value, (name, key, shown, value)


def render(root, path, width=420) -> Path:
    root.resize(width, root.sizeHint().height() + 40)
    root.show()
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    image = root.grab()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert image.save(str(path), "PNG"), path
    return path
