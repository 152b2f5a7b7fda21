"""A model of Slicer's parameterNodeWrapper GUI connection, per Slicer version, on REAL Qt
widgets (PySide6) and a REAL MRML parameter node (slicer-core). Written from reading
Base/Python/slicer/parameterNodeWrapper/{wrapper,guiConnectors}.py at tags v5.6.0, v5.8.1,
v5.10.0 and v5.12.3; only the parts the module's widgets use:

- ``connectGui(gui)``: finds the widgets with a "SlicerParameterName" property, creates a
  connector per widget, writes the node's value into each, attaches each connector's
  callback (widget -> node) and adds a ModifiedEvent observer (node -> every connector of
  this wrapper). Returns the tag from 5.10 on; **5.6 and 5.8 return None** (the tag of the
  inner call is dropped). The observer is removed by ``disconnectGui`` only from 5.12 on.
- the QComboBox connector for a ``Choice`` (QComboBoxToStringableConnector): its constructor
  clears the combo box and adds the choices (``currentIndexChanged`` fires with -1, then 0),
  ``read`` returns ``choices[currentIndex]`` (so index -1 reads the LAST choice), ``write``
  raises ValueError for a value that is not an item.
- QDoubleSpinBox / QSpinBox connectors: ``valueChanged``; QCheckBox: ``stateChanged``.
- ``disconnectGui(tag)``: detaches the callbacks of that tag's connectors (unknown tag:
  nothing); a widget -> node callback does nothing while the wrapper updates the GUI.
"""
from __future__ import annotations

import vtk

VERSIONS = ("5.6", "5.8", "5.10", "5.12")


def _at_least(version: str, other: str) -> bool:
    return tuple(map(int, version.split("."))) >= tuple(map(int, other.split(".")))


class _SignalConnector:
    """Shared part of the widget connectors: one Qt signal drives the parameter-node callback."""

    signal_name = ""

    def __init__(self, widget):
        self.widget = widget
        self.callback = None

    def _changed(self, *args):
        if self.callback:
            self.callback()

    def onChanged(self, callback):
        signal = getattr(self.widget, self.signal_name)
        if callback is None:
            signal.disconnect(self._changed)
        else:
            signal.connect(self._changed)
        self.callback = callback


class ChoiceConnector(_SignalConnector):
    signal_name = "currentIndexChanged"

    def __init__(self, widget, choices):
        super().__init__(widget)
        self.choices = list(choices)
        widget.clear()
        for choice in self.choices:
            widget.addItem(str(choice))

    def read(self):
        return self.choices[self.widget.currentIndex()]

    def write(self, value):
        for index, choice in enumerate(self.choices):
            if choice == value:
                self.widget.setCurrentIndex(index)
                return
        raise ValueError(f"Unable to find value {value} in choices {self.choices}")


class CheckBoxConnector(_SignalConnector):
    """QCheckBoxToBoolConnector: ``stateChanged``, ``checked``."""

    signal_name = "stateChanged"

    def read(self):
        return self.widget.isChecked()

    def write(self, value):
        self.widget.setChecked(bool(value))


class NumberConnector(_SignalConnector):
    signal_name = "valueChanged"

    def __init__(self, widget, kind):
        super().__init__(widget)
        self.kind = kind

    def read(self):
        return self.kind(self.widget.value())

    def write(self, value):
        self.widget.setValue(value)


class ModelWrapper:
    """One ``@parameterNodeWrapper`` instance around an MRML node (a new one per
    ``logic.getParameterNode()`` call, as in the module)."""

    def __init__(self, node, version: str, params: dict):
        assert version in VERSIONS
        self.parameterNode = node
        self.version = version
        self.params = params  # name -> (kind, choices or None, default)
        self._parameterGUIs = {}
        self._nextTag = 0
        self._updating = False
        self._observerTags = {}
        for name, (_kind, _choices, default) in params.items():
            if not node.GetParameter(name):
                self.setValue(name, default)

    def getValue(self, name):
        kind = self.params[name][0]
        text = self.parameterNode.GetParameter(name)
        return text == "true" if kind is bool else kind(text)

    def setValue(self, name, value):
        self.parameterNode.SetParameter(name, ("true" if value else "false") if isinstance(value, bool) else str(value))

    def __getattr__(self, name):
        if name != "params" and name in self.params:
            return self.getValue(name)
        raise AttributeError(name)

    def _callback(self, name, connector):
        def callback():
            if not self._updating:
                was = self.parameterNode.StartModify()
                self.setValue(name, connector.read())
                self.parameterNode.EndModify(was)
        return callback

    def _updateGuiFromNode(self, caller=None, event=None):
        if self._updating:
            return
        self._updating = True
        try:
            for mapping in self._parameterGUIs.values():
                for name, connector in mapping.items():
                    connector.write(self.getValue(name))
        finally:
            self._updating = False

    def connectGui(self, gui):
        from PySide6.QtWidgets import QCheckBox, QComboBox, QWidget

        mapping = {}
        for widget in gui.findChildren(QWidget):
            name = widget.property("SlicerParameterName")
            if name in self.params:
                kind, choices, _default = self.params[name]
                if isinstance(widget, QComboBox):
                    mapping[name] = ChoiceConnector(widget, choices)
                elif isinstance(widget, QCheckBox):
                    mapping[name] = CheckBoxConnector(widget)
                else:
                    mapping[name] = NumberConnector(widget, kind)
        tag = self._nextTag
        self._nextTag += 1
        self._parameterGUIs[tag] = mapping
        for name, connector in mapping.items():
            connector.write(self.getValue(name))
            connector.onChanged(self._callback(name, connector))
        observer = self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, self._updateGuiFromNode)
        if _at_least(self.version, "5.12"):
            self._observerTags[tag] = observer
        return tag if _at_least(self.version, "5.10") else None

    def disconnectGui(self, tag):
        if tag in self._parameterGUIs:
            for connector in self._parameterGUIs[tag].values():
                connector.onChanged(None)
            del self._parameterGUIs[tag]
        if tag in self._observerTags:
            self.parameterNode.RemoveObserver(self._observerTags.pop(tag))


class ModelLogic:
    """``ScriptedLoadableModuleLogic.getParameterNode`` on a scene: the module's singleton
    scripted-module node, created with defaults when the scene has none."""

    def __init__(self, scene, version, params):
        self.scene, self.version, self.params = scene, version, params

    def getParameterNode(self):
        import slicer

        node = self.scene.GetSingletonNode("InterSliceSR", "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag("InterSliceSR")
            node.SetName("InterSliceSR")
            node = self.scene.AddNode(node)
        return ModelWrapper(node, self.version, self.params)
