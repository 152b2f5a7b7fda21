"""Reading: any file or DICOM folder the engine accepts -> a checked `Volume`, or a clear error."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from . import filecheck
from .dicom import (DICOM_SLICE_THICKNESS, DicomSource, _dicom_thickness, _is_dicom_file,
                    _read_dicom_series)
from .geometry import Volume, _numpy_order, geometry_of

IMAGE_IO_BY_SUFFIX = ((".nii.gz", "NiftiImageIO"), (".nii", "NiftiImageIO"),
                      (".nrrd", "NrrdImageIO"), (".nhdr", "NrrdImageIO"),
                      (".mha", "MetaImageIO"), (".mhd", "MetaImageIO"))


DIRECTION_TOLERANCE = 1e-3  # direction columns must be unit length and orthogonal to this


MIN_SIZE = 2  # voxels per axis


LABEL_MAP_MAX_VALUES = 64  # integer inputs with at most this many distinct values


def _image_io(path: Path) -> str:
    """ITK's reader/writer for the suffix, case-insensitively ("" = let ITK probe)."""
    name = path.name.lower()
    return next((io for suffix, io in IMAGE_IO_BY_SUFFIX if name.endswith(suffix)), "")


def check_path_text(path: Path, role: str) -> None:
    """ITK takes UTF-8 paths: a name that is not valid UTF-8 aborts it, so refuse it here."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{role} path {os.fsencode(path)!r} is not valid UTF-8; rename it "
                         "(ITK cannot open such names)") from None


def _stat(path: Path, role: str) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot open {role} {path}: {exc.strerror}") from None


def read_image(path: str | os.PathLike) -> tuple[sitk.Image, float | None]:
    """Read a file or a DICOM series folder; also return DICOM SliceThickness when present.
    (`read_any` also returns the DICOM series' facts.)
    """
    image, thickness, _ = read_any(path)
    return image, thickness


def read_any(path: str | os.PathLike) -> tuple[sitk.Image, float | None, DicomSource | None]:
    """Read a file or a DICOM series folder: (image, DICOM SliceThickness, DICOM facts).

    A DICOM folder must hold exactly one series; to pick one of several, give one of its files.
    """
    path = Path(path)
    check_path_text(path, "input")
    info = _stat(path, "input")
    if info is None:
        raise InputError(f"input not found: {path}")
    try:
        if stat.S_ISDIR(info.st_mode):
            image, source = _read_dicom_series(path, None)
            return image, source.slice_thickness, source
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"input {path} is not a regular file (a pipe or device?); give an "
                             "image file or a DICOM folder")
        if info.st_size == 0:
            raise InputError(f"input {path} is an empty file")
        if _is_dicom_file(path):
            image, source = _read_dicom_series(path.parent, path)
            return image, source.slice_thickness, source
        reason = filecheck.problem(path)
        if reason:
            raise InputError(f"cannot read {path}: {reason}")
        image = _read_file(path)
    except RuntimeError as exc:
        raise InputError(f"cannot read {path}: {_itk_reason(exc)}") from None
    return image, _dicom_thickness(image.GetMetaData(DICOM_SLICE_THICKNESS)
                                   if image.HasMetaDataKey(DICOM_SLICE_THICKNESS) else None), None


def _read_file(path: Path) -> sitk.Image:
    """ITK picks a reader by probing; upper-case names (SCAN.MHA) defeat the probe, so then
    the reader is chosen by the suffix, case-insensitively."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        return reader.Execute()
    except RuntimeError as exc:
        if "Unable to determine ImageIO" not in str(exc) or not _image_io(path):
            raise
    reader.SetImageIO(_image_io(path))
    return reader.Execute()


def _itk_reason(exc: BaseException) -> str:
    """The informative line of an ITK exception (not the C++ file and line)."""
    text = str(exc)
    if "determinant is 0" in text:
        return "its direction cosines are degenerate (determinant 0: two axes point the same way)"
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    for line in lines:
        if "ITK ERROR:" in line:
            return line.split("):", 1)[-1].strip() if "):" in line else line
        if "sitk::ERROR:" in line:
            return line.split("sitk::ERROR:", 1)[1].strip()
    return lines[-1] if lines else "unknown error"


def validate_image(image: sitk.Image) -> None:
    """Refuse what the engine cannot honestly process, with a message that says why."""
    dim = image.GetDimension()
    if dim == 2:
        raise InputError("input is a 2-D image; InterSliceSR needs a 3-D volume (a stack of slices)")
    if dim != 3:
        raise InputError(f"input is a {dim}-D image; InterSliceSR needs a single 3-D volume "
                         "(split 4-D series into 3-D volumes first)")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"input is a vector image with {image.GetNumberOfComponentsPerPixel()} "
                         "components per voxel; InterSliceSR needs a scalar (grayscale) volume")
    if min(image.GetSize()) < MIN_SIZE:
        raise InputError(f"input size {image.GetSize()} has an axis with fewer than {MIN_SIZE} "
                         "voxels")
    spacing = image.GetSpacing()
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"input spacing {tuple(spacing)} is not positive and finite")
    if "complex" in image.GetPixelIDTypeAsString():
        raise InputError("input has complex voxels; give the magnitude image")
    matrix = np.asarray(image.GetDirection(), np.float64).reshape(3, 3)
    if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-6:
        raise InputError("input direction cosines are degenerate (two axes point the same "
                         "way); the file's orientation is broken")
    if np.abs(matrix.T @ matrix - np.eye(3)).max() > DIRECTION_TOLERANCE:
        raise InputError("input direction cosines are not orthonormal (a sheared or scaled "
                         "grid); the slice spacing is not the distance between slices, so "
                         "resample it onto an orthogonal grid first")


def to_volume(image: sitk.Image, *, slice_thickness: float | None = None, force: bool = False,
              slice_axis: int | None = None, source: str = "") -> Volume:
    """Validate and convert a SimpleITK image into the canonical Volume."""
    validate_image(image)
    geometry = geometry_of(image, slice_axis)
    raw = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(raw.dtype, np.floating) and not np.isfinite(raw).all():
        bad = int(np.size(raw) - np.count_nonzero(np.isfinite(raw)))
        raise InputError(f"input has {bad} non-finite voxels (NaN or infinity); "
                         "fix or mask them before super-resolution")
    low, high = raw.min(), raw.max()
    if low == high:
        raise InputError(f"input is constant (every voxel is {low}); there is nothing to "
                         "super-resolve")
    if np.issubdtype(raw.dtype, np.integer) and not force:
        distinct = distinct_values(raw, limit=LABEL_MAP_MAX_VALUES + 1)
        if distinct <= LABEL_MAP_MAX_VALUES:
            raise InputError(f"input looks like a label map (integer voxels with only {distinct} "
                             "distinct values); super-resolution is for intensity images "
                             "(use --force to process it anyway)")
    # a copy, always: `raw` is a view into the image's buffer, which may be freed after return
    array = np.array(np.transpose(raw, _numpy_order(geometry.slice_axis)), np.float32, order="C")
    return Volume(array=array, geometry=geometry, pixel_id=image.GetPixelID(),
                  slice_thickness=slice_thickness, source=source)


def distinct_values(raw: np.ndarray, limit: int) -> int:
    """How many distinct values `raw` holds, counting every voxel, up to `limit`."""
    if raw.dtype.itemsize <= 2:  # a histogram is exact and fast for 8- and 16-bit voxels
        low = int(raw.min())
        counts = np.bincount((raw.ravel().astype(np.int64) - low))
        return min(int(np.count_nonzero(counts)), limit)
    seen = np.empty(0, raw.dtype)
    for block in np.array_split(raw.ravel(), max(1, raw.size // 4_000_000)):
        seen = np.union1d(seen, np.unique(block))
        if seen.size >= limit:
            return limit
    return int(seen.size)


def load_volume(path: str | os.PathLike, *, force: bool = False) -> Volume:
    image, thickness, dicom = read_any(path)
    volume = to_volume(image, slice_thickness=thickness, force=force, source=str(path))
    volume.dicom = dicom
    return volume


def input_sha256(path: str | os.PathLike) -> str:
    """sha256 of an input: a file's bytes, or a folder's files (names and bytes, sorted; not
    recursive, like the DICOM series reader). "" when it cannot be read."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        folder = path.is_dir()
        files = sorted(p for p in path.iterdir() if p.is_file()) if folder else [path]
        for file in files:
            if folder:
                digest.update(os.fsencode(file.name) + b"\0")
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()
