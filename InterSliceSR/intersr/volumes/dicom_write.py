"""DICOM series out: the result as a DERIVED\\SECONDARY series that cannot pass for an acquired one.

One file per slice of the output's third index axis (pydicom), so that any DICOM reader
(SimpleITK/GDCM, Slicer, a PACS) rebuilds the same grid as the NRRD output: ImagePositionPatient
per slice, ImageOrientationPatient from the first two direction columns, PixelSpacing, and
SliceThickness = SpacingBetweenSlices = the spacing between the written slices (the output
spacing when the refined axis is the third). ImageType DERIVED\\SECONDARY, a SeriesDescription
ending "InterSliceSR synthesised", DerivationDescription with the provenance and a new
SeriesInstanceUID mark it as computed. Patient, study and frame-of-reference tags are copied
from a DICOM input (the same StudyInstanceUID: the series sits beside the one it came from);
a non-DICOM input gives empty patient tags and a new study (the caller warns).

The series is written to a temporary folder beside OUTPUT and renamed, so OUTPUT is either
complete or absent; nothing is ever written into an existing non-empty folder.

A left-handed grid (direction determinant < 0) is written slice by slice all the same; DICOM
readers then order the slices along row x column, i.e. the third axis reversed: the same voxels
in space, a different index order than the NRRD output.
"""
from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, OutputError
from ..protocol import DICOM_IMAGE_TYPE, derivation_description, series_description
from .read import check_path_text

IMAGE_TYPE = tuple(DICOM_IMAGE_TYPE.split("\\"))
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# Copied from a DICOM input: patient, study, frame of reference (same patient space), and the
# acquisition facts of the series the result was computed from.
COPIED_TAGS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription",
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    "Modality", "BodyPartExamined", "PatientPosition",
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
    "RepetitionTime", "EchoTime", "EchoTrainLength", "InversionTime", "FlipAngle",
    "MagneticFieldStrength", "ImagingFrequency", "ImagedNucleus", "KVP",
)
MR_DEFAULTS = {"ScanningSequence": "RM", "SequenceVariant": "NONE", "ScanOptions": "",
               "MRAcquisitionType": "3D", "EchoTime": None, "EchoTrainLength": None}


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise InputError("DICOM output needs the pydicom package: pip install pydicom "
                         "(or choose a .nrrd, .nii.gz or .mha OUTPUT)") from None
    return pydicom


def wants_dicom(output_path: str | os.PathLike, output_format: str | None) -> bool:
    """OUTPUT is a DICOM folder: `--output-format dicom`, or a name ending in a separator."""
    text = os.fspath(output_path)
    return output_format == "dicom" or text.endswith(("/", os.sep))


def check_dicom_folder(path: str | os.PathLike, input_path: str | os.PathLike | None = None
                       ) -> Path:
    """Fail before any work when the DICOM folder cannot be made: a new or empty folder in a
    writable parent, never the input (nor a folder holding it), pydicom installed."""
    _pydicom()
    path = Path(os.fspath(path).rstrip("/" + os.sep) or os.sep)
    check_path_text(path, "output")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output folder's parent does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output folder's parent is not writable: {parent}")
    if path.exists():
        if not path.is_dir():
            raise InputError(f"DICOM output {path} is an existing file; give a new folder name")
        if any(path.iterdir()):
            raise InputError(f"DICOM output folder {path} exists and is not empty; give a new "
                             "or empty folder (nothing is ever overwritten)")
    if input_path is not None:
        source = Path(input_path).resolve()
        target = path.resolve()
        if target == source or target in source.parents:
            raise InputError(f"DICOM output folder {path} is (or holds) the input; choose "
                             "another folder (the input is never overwritten)")
    return path


def read_source_header(files) -> object | None:
    """The first file's header (no pixels) of a DICOM input, or None."""
    if not files:
        return None
    pydicom = _pydicom()
    try:
        return pydicom.dcmread(files[0], stop_before_pixels=True)
    except Exception:  # unreadable by pydicom though GDCM read it: write without its tags
        return None


def _ds(value: float):
    from pydicom.valuerep import DSfloat
    return DSfloat(float(value), auto_format=True)


def _pixels(array: np.ndarray) -> tuple[np.ndarray, dict]:
    """Stored 16-bit pixels and the tags that describe them (a rescale for other types)."""
    if array.dtype in (np.int8, np.int16, np.uint8, np.uint16):
        signed = np.issubdtype(array.dtype, np.signedinteger)
        stored = array.astype(np.int16 if signed else np.uint16)
        return stored, {"PixelRepresentation": int(signed)}
    low, high = float(array.min()), float(array.max())
    slope = (high - low) / 65535.0 if high > low else 1.0
    stored = np.clip(np.rint((array.astype(np.float64) - low) / slope), 0, 65535)
    return stored.astype(np.uint16), {"PixelRepresentation": 0, "RescaleIntercept": _ds(low),
                                      "RescaleSlope": _ds(slope), "RescaleType": "US"}


def write_dicom_series(image: sitk.Image, folder: str | os.PathLike, provenance: dict[str, str],
                       *, source_files=(), source_description: str = "",
                       fallback_description: str = "", version: str = "") -> Path:
    """Write `image` as a new DICOM series in `folder` (atomically). Returns the folder."""
    pydicom = _pydicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = check_dicom_folder(folder)
    source = read_source_header(source_files)
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    stored, pixel_tags = _pixels(array)
    size, spacing, direction = image.GetSize(), image.GetSpacing(), image.GetDirection()
    now = datetime.datetime.now()
    date, time_ = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    series_uid = generate_uid()
    sop_class = getattr(source, "SOPClassUID", MR_IMAGE_STORAGE)
    if sop_class not in (MR_IMAGE_STORAGE, CT_IMAGE_STORAGE):
        sop_class = MR_IMAGE_STORAGE
    base = Dataset()
    for keyword in COPIED_TAGS:
        if source is not None and keyword in source:
            setattr(base, keyword, source.data_element(keyword).value)
    if "StudyInstanceUID" not in base:  # not from DICOM: a new study, empty patient tags
        base.StudyInstanceUID = generate_uid()
        base.FrameOfReferenceUID = generate_uid()
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                        "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                        "ReferringPhysicianName"):
            setattr(base, keyword, "")
    if sop_class == MR_IMAGE_STORAGE:
        base.Modality = "MR"
        for keyword, value in MR_DEFAULTS.items():
            if keyword not in base:
                setattr(base, keyword, value if value is not None else "")
    else:
        base.Modality = "CT"
    base.SOPClassUID = sop_class
    base.SeriesInstanceUID = series_uid
    try:
        number = int(getattr(source, "SeriesNumber", 0) or 0)
    except (TypeError, ValueError):
        number = 0
    base.SeriesNumber = number + 1000
    base.SeriesDate = base.ContentDate = base.InstanceCreationDate = date
    base.SeriesTime = base.ContentTime = base.InstanceCreationTime = time_
    base.ImageType = list(IMAGE_TYPE)
    base.SeriesDescription = series_description(source_description, fallback_description)
    base.DerivationDescription = derivation_description(provenance)
    base.Manufacturer = "InterSliceSR"
    base.SoftwareVersions = f"InterSliceSR {version}".strip()
    base.ImageOrientationPatient = [_ds(v) for v in (direction[0], direction[3], direction[6],
                                                     direction[1], direction[4], direction[7])]
    base.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # row spacing, column spacing
    base.SliceThickness = _ds(spacing[2])
    base.SpacingBetweenSlices = _ds(spacing[2])
    base.SamplesPerPixel = 1
    base.PhotometricInterpretation = "MONOCHROME2"
    base.Rows, base.Columns = int(size[1]), int(size[0])
    base.BitsAllocated, base.BitsStored, base.HighBit = 16, 16, 15
    for keyword, value in pixel_tags.items():
        setattr(base, keyword, value)
    normal = np.cross(np.asarray(direction[0::3]), np.asarray(direction[1::3]))

    temp = folder.with_name(f".intersr-{os.getpid()}.partial-{folder.name}")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        temp.mkdir()
        for k in range(size[2]):
            ds = Dataset()
            ds.update(base)
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceNumber = k + 1
            position = image.TransformIndexToPhysicalPoint((0, 0, k))
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.SliceLocation = _ds(float(np.dot(normal, position)))
            ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = sop_class
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            _save(pydicom, ds, temp / f"slice{k + 1:04d}.dcm")
        if folder.exists():
            folder.rmdir()  # checked empty above
        os.replace(temp, folder)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise OutputError(f"could not write the DICOM series {folder}: "
                          f"{exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return folder


def _save(pydicom, ds, path: Path) -> None:
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2 (older Slicer): encoding set on the dataset
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)
