"""Shared fixtures: small real volumes cut from the embedded sample scan."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
from intersr.resources import SAMPLE


def sample_crop(size=(48, 48, 14), start=(40, 40, 24)) -> sitk.Image:
    """A real 2x2x3 mm T1 crop (the slice axis is z)."""
    image = sitk.ReadImage(str(SAMPLE))
    return sitk.RegionOfInterest(image, list(size), list(start))


def oblique_direction() -> tuple[float, ...]:
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(0.3, -0.2, 0.45)
    return tuple(rotation.GetMatrix())


@pytest.fixture
def small_volume(tmp_path) -> Path:
    path = tmp_path / "small.nrrd"
    sitk.WriteImage(sample_crop(), str(path))
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def qapp():
    """One real QApplication (PySide6, offscreen platform: CI has no display)."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    yield app
