"""What a run produces (torch-free): adaptation summary and the run's result."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..volumes.geometry import Geometry


@dataclass
class AdaptResult:
    steps: int = 0
    seconds: float = 0.0
    initial_loss: float = float("nan")  # held-out L1 before any step
    final_loss: float = float("nan")  # best held-out L1 (the kept weights)
    stopped_early: bool = False
    history: list[tuple[int, float, float]] = field(default_factory=list)  # step, train, held-out
    # AdaptConfig.keep_at: step -> (the weights a budget of that many steps returns, seconds)
    kept: dict[int, tuple[Any, float]] = field(default_factory=dict)
    # in-plane axes (1 rows, 2 cols) that the training planes lay beside: inference planes
    # beside any other axis keep the initial network (networks.backends.PerPlane)
    beside: tuple[int, ...] = (1, 2)


@dataclass
class RunResult:
    array: np.ndarray  # canonical output, input intensity units
    geometry: Geometry
    factor: float
    thickness: float
    adaptation: AdaptResult
    data_consistency_db: float
    weights_sha256: str
    seconds: float
    backend: str = ""  # what ran the network, e.g. "onnxruntime 1.31.1 on cpu"
    provenance: dict[str, str] = field(default_factory=dict)
    profile: Any = None  # the slice profile used (degrade.SliceProfile)
    confidence: np.ndarray | None = None  # expected |error| per voxel (normalised), if asked
    spread: np.ndarray | None = None  # |row pass - col pass| (normalised), with confidence
