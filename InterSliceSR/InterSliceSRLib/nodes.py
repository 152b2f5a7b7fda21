"""New volume nodes from the engine's files: one way to add them to the scene safely.

The file is read into a new node before the scene sees it; the node is added with its name,
description and provenance attributes, then set up by the caller; when the set-up fails the
node is removed again, so a failed run never leaves a half-made node behind. The result and
its confidence map are both made here. Qt-free (``slicer`` is imported only when called).
"""
from __future__ import annotations

from typing import Callable

PROVENANCE_ATTRIBUTE_PREFIX = "InterSliceSR."


def addVolumeNode(scene, path: str, readVolume: Callable, name: str, description: str,
                  attributes: dict, transformFrom, setUp: Callable):
    """A new scalar volume node read from `path`, in `transformFrom`'s transform.

    readVolume(node, path) reads the file (raises before anything is added); attributes are
    stored under PROVENANCE_ATTRIBUTE_PREFIX; setUp(node) runs once the node and its default
    display nodes are in the scene."""
    import slicer

    node = slicer.vtkMRMLScalarVolumeNode()
    readVolume(node, path)
    node.SetName(name)
    node.SetDescription(description)
    for key, value in attributes.items():
        node.SetAttribute(PROVENANCE_ATTRIBUTE_PREFIX + key, str(value))
    scene.AddNode(node)
    try:
        node.SetAndObserveTransformNodeID(transformFrom.GetTransformNodeID())
        node.CreateDefaultDisplayNodes()
        setUp(node)
    except Exception:
        scene.RemoveNode(node)  # never leave a half-made node behind
        raise
    return node
