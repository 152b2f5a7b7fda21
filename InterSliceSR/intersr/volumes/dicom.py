"""DICOM series in: pick the series, read it with SimpleITK, keep the scanner's slice thickness."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

DICOM_SLICE_THICKNESS = "0018|0050"


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


def _read_dicom_series(folder: Path, member: Path | None) -> tuple[sitk.Image, float | None]:
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
    thickness = None
    if reader.HasMetaDataKey(0, DICOM_SLICE_THICKNESS):
        thickness = _dicom_thickness(reader.GetMetaData(0, DICOM_SLICE_THICKNESS))
    return image, thickness


def _describe_series(folder: Path, reader: sitk.ImageSeriesReader, uid: str) -> str:
    files = reader.GetGDCMSeriesFileNames(str(folder), uid)
    label = ""
    try:
        probe = sitk.ImageFileReader()
        probe.SetFileName(files[0])
        probe.ReadImageInformation()
        if probe.HasMetaDataKey("0008|103e"):
            label = f" '{probe.GetMetaData('0008|103e').strip()}'"
    except RuntimeError:
        pass
    return f"{len(files)} files{label}, e.g. {Path(files[0]).name}"
