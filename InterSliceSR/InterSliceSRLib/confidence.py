"""The confidence map on the Slicer side: the engine flag, and the second node it makes.

When the "Confidence map" checkbox (parameter ``confidenceMap``) is on, the engine also writes
``confidence.nrrd`` (``intersr run --confidence``: per voxel, the expected absolute error of the
result in normalised intensity) beside its result; it is loaded as a second volume node
"<result> confidence", with its own provenance, shown as a colour overlay on the result. It is
never written over the result. Qt-free (``slicer`` is imported only when a node is made).
"""
from __future__ import annotations

import logging
import os

from intersr import protocol

from .nodes import PROVENANCE_ATTRIBUTE_PREFIX, addVolumeNode

FILE_NAME = "confidence.nrrd"
PARAMETER = "confidenceMap"  # the parameter node's checkbox
COLOR_NODE_ID = "vtkMRMLColorTableNodeFileColdToHotRainbow.txt"  # Slicer's ColdToHotRainbow
OPACITY = 0.4  # of the overlay on the result


def wanted(params) -> bool:
    return bool(getattr(params, PARAMETER, False))


def path_in(folder: str) -> str:
    return os.path.join(folder, FILE_NAME)


def engine_flags(params, folder: str) -> list:
    """``--confidence <folder>/confidence.nrrd`` when the checkbox is on (single volumes only)."""
    return ["--confidence", path_in(folder)] if wanted(params) else []


def node_name(resultNode) -> str:
    return f"{resultNode.GetName()} confidence"


def describe(provenance: dict) -> str:
    lines = ["InterSliceSR confidence map: per voxel, the expected absolute error of the "
             "synthesised value (normalised intensity); low at acquired slab centres, higher "
             "for invented in-between detail. Not an image of the anatomy."]
    lines += [f"{key}: {provenance[key]}" for key in protocol.ordered(provenance)]
    return "\n".join(lines)


def add_node(resultNode, path: str, readVolume):
    """Load `path` as "<result> confidence" beside `resultNode`, coloured, with provenance.

    readVolume(node, path) reads the file into the node (raises before anything is added)."""
    provenance = {protocol.short_key(k): v
                  for k, v in protocol.read_nrrd_provenance(path).items()}

    def setUp(node):
        display = node.GetDisplayNode()
        display.SetAndObserveColorNodeID(COLOR_NODE_ID)
        display.SetAutoWindowLevel(False)
        high = _upper(node)
        display.SetWindowLevel(high, high / 2)
        display.SetInterpolate(False)
        resultNode.SetAttribute(PROVENANCE_ATTRIBUTE_PREFIX + "confidenceNode", node.GetID())

    return addVolumeNode(resultNode.GetScene(), path, readVolume, node_name(resultNode),
                         describe(provenance),
                         {**provenance, "confidenceOf": resultNode.GetID() or ""},
                         resultNode, setUp)


def _upper(node) -> float:
    """The colour range's top: the map's 99th percentile (its largest values are rare)."""
    try:
        import numpy as np
        from vtk.util.numpy_support import vtk_to_numpy

        values = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars())
        high = float(np.percentile(values, 99))
        return high if high > 0 else 1.0
    except Exception:
        return 0.1


def show_overlay(resultNode, confidenceNode) -> None:
    """The result in the background, the map as a partly transparent colour overlay (GUI only)."""
    try:
        import slicer

        if getattr(slicer, "app", None) is None or slicer.util.mainWindow() is None:
            return
        slicer.util.setSliceViewerLayers(background=resultNode, foreground=confidenceNode,
                                         foregroundOpacity=OPACITY, fit=True)
    except Exception:
        logging.debug("InterSliceSR: could not show the confidence overlay", exc_info=True)
