"""DICOM series in: pick the series, read it with SimpleITK, keep what the scanner said.

SliceThickness (0018,0050) is the slice profile's nominal FWHM (the engine's default
thickness); SpacingBetweenSlices (0018,0088) and the series description are kept to be
reported (a gap between slices shows as spacing > thickness) and, with DICOM output, the
series' files give the patient and study tags of the result (`dicom_write.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

DICOM_SLICE_THICKNESS = "0018|0050"
DICOM_SPACING_BETWEEN_SLICES = "0018|0088"
DICOM_SERIES_DESCRIPTION = "0008|103e"


@dataclass(frozen=True)
class DicomSource:
    """What a DICOM input's header said (the first file of the series, sorted by ITK)."""

    files: tuple[str, ...]
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    series_description: str = ""

    def describe(self, slice_spacing: float | None = None) -> str:
        """One log line: the tags and what the run makes of them."""
        parts = [f"SliceThickness {_mm(self.slice_thickness)}",
                 f"SpacingBetweenSlices {_mm(self.spacing_between_slices)}"]
        if slice_spacing is not None:
            parts.append(f"slice positions {slice_spacing:.4g} mm apart")
        text = "DICOM series"
        if self.series_description:
            text += f" '{self.series_description}'"
        text += ": " + ", ".join(parts)
        if self.slice_thickness is not None:
            text += f"; slice thickness {self.slice_thickness:.4g} mm from the header"
            if slice_spacing is not None and slice_spacing > self.slice_thickness * 1.01:
                text += f" (a gap of {slice_spacing - self.slice_thickness:.3g} mm between slices)"
        else:
            text += "; no slice thickness in the header"
        return text


def _mm(value: float | None) -> str:
    return "absent" if value is None else f"{value:.4g} mm"


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _dicom_thickness(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"the input's DICOM SliceThickness ({text.strip()}) is not a positive "
                         "number of mm; give the real thickness with --thickness")
    return value


def _positive_or_none(text: str | None) -> float | None:
    """An optional header number that is only reported: unreadable means absent."""
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _read_dicom_series(folder: Path, member: Path | None) -> tuple[sitk.Image, DicomSource]:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"no DICOM series found in folder {folder}")
    chosen = None
    if member is not None:
        for uid in series:
            files = reader.GetGDCMSeriesFileNames(str(folder), uid)
            if any(Path(f).resolve() == member.resolve() for f in files):
                chosen = files
    elif len(series) == 1:
        chosen = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    else:
        listing = "; ".join(_describe_series(folder, reader, uid) for uid in series)
        raise InputError(f"folder {folder} holds {len(series)} DICOM series ({listing}); give "
                         "one file of the series to process as INPUT")
    if not chosen:
        raise InputError(f"{member} belongs to no readable DICOM series in {folder}")
    reader.SetFileNames(chosen)
    reader.MetaDataDictionaryArrayUpdateOn()
    image = reader.Execute()
    def tag(key: str) -> str | None:
        return reader.GetMetaData(0, key) if reader.HasMetaDataKey(0, key) else None

    source = DicomSource(
        files=tuple(str(f) for f in chosen),
        slice_thickness=_dicom_thickness(tag(DICOM_SLICE_THICKNESS)),
        spacing_between_slices=_positive_or_none(tag(DICOM_SPACING_BETWEEN_SLICES)),
        series_description=(tag(DICOM_SERIES_DESCRIPTION) or "").strip())
    return image, source


def _describe_series(folder: Path, reader: sitk.ImageSeriesReader, uid: str) -> str:
    files = reader.GetGDCMSeriesFileNames(str(folder), uid)
    label = ""
    try:
        probe = sitk.ImageFileReader()
        probe.SetFileName(files[0])
        probe.ReadImageInformation()
        if probe.HasMetaDataKey(DICOM_SERIES_DESCRIPTION):
            label = f" '{probe.GetMetaData(DICOM_SERIES_DESCRIPTION).strip()}'"
    except RuntimeError:
        pass
    return f"{len(files)} files{label}, e.g. {Path(files[0]).name}"
