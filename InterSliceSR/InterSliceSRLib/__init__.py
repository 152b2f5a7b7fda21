"""Qt-free glue between 3D Slicer's MRML scene and the InterSliceSR engine.

Nothing in this package imports qt, ctk or slicer.app at import time, so it runs headless
with only the ``slicer-core`` wheel (see Testing/test_slicer_logic.py). The engine runs in a
separate process; only its torch-free core (``intersr.options``, ``grid``, ``memory``,
``protocol``) is imported here.
"""

from .geometry import (  # noqa: F401
    GridInfo,
    describe_grid,
    expected_output_ijk_to_ras,
    output_slice_count,
)
from .progress import ProgressState, parse_line  # noqa: F401
from .engine_process import EngineProcess, build_engine_args  # noqa: F401
from .logic import InterSliceSRLogicCore, RunParameters, RunError  # noqa: F401

__all__ = [
    "EngineProcess", "GridInfo", "InterSliceSRLogicCore", "ProgressState",
    "RunError", "RunParameters", "build_engine_args", "describe_grid", "expected_output_ijk_to_ras",
    "output_slice_count", "parse_line",
]
