"""Keep one parameter node connected to the module's widgets, on every Slicer version.

``parameterNodeWrapper.connectGui`` returns no tag before Slicer 5.10 (its internal call's
result is dropped), so the template's ``disconnectGui(tag)`` does nothing there: the old
combo-box connectors stay attached, and when the next ``connectGui`` repopulates a combo box
they write index -1 and then 0 back into the node - the choice resets to the first item each
time the module is entered. Two rules avoid that on all versions:

- connect once per parameter *node*: entering the module again with the same node keeps the
  existing connection (connecting again is what repopulates the combo boxes);
- to disconnect without a tag, disconnect every connection the wrapper holds (its tags are
  the keys of the wrapper's connector table, the same on 5.6 - 5.13).
Qt-free: the wrapper and the GUI are whatever Slicer passes in.
"""
from __future__ import annotations


def disconnect_gui(wrapper, tag) -> None:
    """``wrapper.disconnectGui(tag)``, or every connection of ``wrapper`` when there is no tag."""
    if tag is not None:
        wrapper.disconnectGui(tag)
        return
    for known_tag in list(getattr(wrapper, "_parameterGUIs", {})):
        wrapper.disconnectGui(known_tag)


class ParameterNodeBinding:
    """The widget's one connection between its GUI and a parameter node wrapper."""

    def __init__(self, gui, after_connect=None):
        self.gui = gui
        self.wrapper = None
        self.tag = None
        # Called with the GUI after each connection: the wrapper has just refilled the combo
        # boxes with the choice values (the module shows translated labels instead).
        self.after_connect = after_connect

    @property
    def node(self):
        """The MRML node behind the connected wrapper (None when unbound)."""
        return None if self.wrapper is None else self.wrapper.parameterNode

    def bind(self, wrapper) -> bool:
        """Connect ``wrapper`` unless the same MRML node is already connected. Returns True
        when the connection changed (the caller then re-observes the node)."""
        if wrapper is not None and self.wrapper is not None and wrapper.parameterNode is self.node:
            return False
        self.unbind()
        if wrapper is not None:
            self.wrapper = wrapper
            self.tag = wrapper.connectGui(self.gui)
            if self.after_connect is not None:
                self.after_connect(self.gui)
        return True

    def unbind(self) -> None:
        if self.wrapper is not None:
            disconnect_gui(self.wrapper, self.tag)
        self.wrapper = None
        self.tag = None
