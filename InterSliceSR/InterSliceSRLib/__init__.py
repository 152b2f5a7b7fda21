"""Qt-free glue between 3D Slicer's MRML scene and the InterSliceSR engine.

Nothing in this package imports qt, ctk or slicer.app at import time, so it runs headless
with only the ``slicer-core`` wheel (see Testing/test_slicer_logic.py). The engine runs in a
separate process; only its torch-free core (``intersr.options``, ``grid``, ``memory``,
``protocol``) is imported here. Import the submodules directly (``from InterSliceSRLib.logic import ...``):
this file imports nothing, so loading the module at Slicer start-up pulls in neither numpy
nor SimpleITK (``geometry`` needs them; the module imports it only when it shows a volume).
"""
