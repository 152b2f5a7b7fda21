"""Fusion from Slicer against a REAL MRML scene (slicer-core): the console API `logic.fuse`
runs `intersr fuse` in the background process; the inputs are only read, one node is added,
none on failure."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "InterSliceSR"))

import slicer  # noqa: E402  (slicer-core wheel)
import slicer.util  # noqa: E402

from InterSliceSRLib.logic import InterSliceSRLogicCore, RunError, readVolumeFromFile  # noqa: E402
from test_fusion import case  # noqa: E402  (the simulated stacks of the method's tests)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    from test_fusion import truth as truth_fixture

    truth = truth_fixture.__wrapped__()
    images, thick, _ = case(truth, factor=3, seed=11)
    folder = tmp_path_factory.mktemp("stacks")
    paths = []
    for image, name in zip(images, ("axial", "coronal", "sagittal")):
        paths.append(folder / f"{name}.nrrd")
        sitk.WriteImage(sitk.Cast(image, sitk.sitkInt16), str(paths[-1]))
    return paths


def load(scene, path, name):
    node = slicer.vtkMRMLScalarVolumeNode()
    readVolumeFromFile(node, str(path))
    node.SetName(name)
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    return node


def test_logic_fuse_adds_one_node_in_the_reference_frame(stacks, tmp_path):
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)  # as in Slicer
    nodes = [load(scene, p, p.stem) for p in stacks]
    before = [slicer.util.arrayFromVolume(n).copy() for n in nodes]
    count = scene.GetNumberOfNodes()
    events = []
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_path / "tmp"))
    out = logic.fuse(nodes, device="cpu", on_event=events.append, timeout=600)
    assert logic.state == "succeeded"
    assert out.GetName() == "axial + 2 stacks (InterSliceSR synthesised)"
    assert scene.GetNumberOfNodes() == count + 2  # the volume and its display node
    assert out.GetAttribute("InterSliceSR.stacks") == "3"
    assert "from 3 stacks" in out.GetDescription()
    assert np.allclose(out.GetSpacing(), (2.0, 2.0, 2.0))
    ref_dirs, out_dirs = np.zeros((3, 3)), np.zeros((3, 3))
    nodes[0].GetIJKToRASDirections(ref_dirs)
    out.GetIJKToRASDirections(out_dirs)
    assert np.allclose(ref_dirs, out_dirs, atol=1e-6)
    for node, array in zip(nodes, before):  # the inputs are untouched
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), array)
    stages = {e["stage"] for e in events}
    assert {"start", "register", "prior", "fuse", "done", "result"} <= stages
    assert not list((tmp_path / "tmp").iterdir())


def test_logic_fuse_failure_and_bad_input_add_nothing(stacks, tmp_path):
    scene = slicer.vtkMRMLScene()
    nodes = [load(scene, p, p.stem) for p in stacks[:2]]
    far = load(scene, stacks[1], "far away")
    far.SetOrigin(5000.0, 5000.0, 5000.0)
    count = scene.GetNumberOfNodes()
    logic = InterSliceSRLogicCore(tempRoot=str(tmp_path / "tmp"))
    with pytest.raises(RunError, match="overlap"):
        logic.fuse([nodes[0], far], device="cpu", timeout=600)
    with pytest.raises(ValueError, match="two or more"):
        logic.fuse([nodes[0]])
    with pytest.raises(ValueError, match="once"):
        logic.fuse([nodes[0], nodes[0]])
    assert scene.GetNumberOfNodes() == count
    assert not list((tmp_path / "tmp").iterdir())
