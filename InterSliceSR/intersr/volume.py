"""I/O and geometry: the one place that knows about files, axes and physical space.

The engine works on a canonical float32 array shaped (slices, rows, cols), where axis 0 is
the slice axis (largest spacing). `Geometry` remembers how to map that array back to the
image's physical space, and `output_geometry` implements the same-field-of-view convention
of DESIGN.md with the one grid rule (`intersr.grid`).
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import filecheck
from .errors import InputError, OutputError, ResourceError
from .filecheck import disk_full_reason
from .grid import (ISOTROPY_TOLERANCE, find_slice_axis, is_isotropic,  # noqa: F401 (re-exported)
                   origin_shift, output_positions, output_slice_count)

WRITABLE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")  # single-file formats: atomic rename
DICOM_SLICE_THICKNESS = "0018|0050"


@dataclass(frozen=True)
class Geometry:
    """Physical geometry of a 3-D image in ITK order (x, y, z index axes)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # row-major 3x3
    slice_axis: int  # ITK index axis with the largest spacing

    @property
    def slice_spacing(self) -> float:
        return self.spacing[self.slice_axis]

    @property
    def inplane_spacings(self) -> tuple[float, float]:
        """Spacings of canonical rows and cols (the two non-slice axes, numpy order)."""
        rows_axis, cols_axis = _inplane_itk_axes(self.slice_axis)
        return self.spacing[rows_axis], self.spacing[cols_axis]

    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)


@dataclass
class Volume:
    """A canonical (slices, rows, cols) float32 array with its geometry and source facts."""

    array: np.ndarray
    geometry: Geometry
    pixel_id: int
    slice_thickness: float | None = None  # from DICOM SliceThickness when known
    source: str = ""


def _inplane_itk_axes(slice_axis: int) -> tuple[int, int]:
    """ITK axes that become canonical rows and cols (numpy order: higher ITK axis first)."""
    others = [a for a in (2, 1, 0) if a != slice_axis]
    return others[0], others[1]


def _numpy_order(slice_axis: int) -> tuple[int, int, int]:
    """Permutation from SimpleITK's numpy array (z, y, x) to canonical (slice, rows, cols)."""
    rows_axis, cols_axis = _inplane_itk_axes(slice_axis)
    return (2 - slice_axis, 2 - rows_axis, 2 - cols_axis)


def geometry_of(image: sitk.Image, slice_axis: int | None = None) -> Geometry:
    spacing = tuple(float(s) for s in image.GetSpacing())
    return Geometry(
        size=tuple(int(n) for n in image.GetSize()),
        spacing=spacing,
        origin=tuple(float(o) for o in image.GetOrigin()),
        direction=tuple(float(d) for d in image.GetDirection()),
        slice_axis=find_slice_axis(spacing) if slice_axis is None else slice_axis,
    )


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


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def read_image(path: str | os.PathLike) -> tuple[sitk.Image, float | None]:
    """Read a file or a DICOM series folder; also return DICOM SliceThickness when present.

    A DICOM folder must hold exactly one series; to pick one of several, give one of its files.
    """
    path = Path(path)
    check_path_text(path, "input")
    info = _stat(path, "input")
    if info is None:
        raise InputError(f"input not found: {path}")
    try:
        if stat.S_ISDIR(info.st_mode):
            return _read_dicom_series(path, None)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"input {path} is not a regular file (a pipe or device?); give an "
                             "image file or a DICOM folder")
        if info.st_size == 0:
            raise InputError(f"input {path} is an empty file")
        if _is_dicom_file(path):
            return _read_dicom_series(path.parent, path)
        reason = filecheck.problem(path)
        if reason:
            raise InputError(f"cannot read {path}: {reason}")
        image = _read_file(path)
    except RuntimeError as exc:
        raise InputError(f"cannot read {path}: {_itk_reason(exc)}") from None
    return image, _dicom_thickness(image.GetMetaData(DICOM_SLICE_THICKNESS)
                                   if image.HasMetaDataKey(DICOM_SLICE_THICKNESS) else None)


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
    image, thickness = read_image(path)
    return to_volume(image, slice_thickness=thickness, force=force, source=str(path))


def output_geometry(geometry: Geometry, new_spacing: float) -> Geometry:
    """Same field of view, new spacing along the slice axis; direction kept exactly."""
    axis = geometry.slice_axis
    s = geometry.slice_spacing
    factor = s / new_spacing
    size = list(geometry.size)
    size[axis] = output_slice_count(size[axis], factor)
    spacing = list(geometry.spacing)
    spacing[axis] = new_spacing
    origin = np.asarray(geometry.origin) + (geometry.direction_matrix()[:, axis]
                                            * origin_shift(s, new_spacing))
    return replace(geometry, size=tuple(size), spacing=tuple(spacing),
                   origin=tuple(float(o) for o in origin))


def thick_slice_geometry(geometry: Geometry, axis: int, factor: float) -> Geometry:
    """Geometry of thick slabs of k voxels made from `geometry` along `axis` (same FOV start).

    The inverse of `output_geometry`: used to build simulated thick-slice cases.
    """
    h = geometry.spacing[axis]
    size = list(geometry.size)
    size[axis] = int(np.floor(size[axis] / factor + 1e-6))
    spacing = list(geometry.spacing)
    spacing[axis] = h * factor
    shift = -h / 2 + h * factor / 2
    origin = np.asarray(geometry.origin) + geometry.direction_matrix()[:, axis] * shift
    return replace(geometry, size=tuple(size), spacing=tuple(spacing),
                   origin=tuple(float(o) for o in origin), slice_axis=axis)


def to_image(array: np.ndarray, geometry: Geometry, pixel_id: int | None = None) -> sitk.Image:
    """Canonical (slices, rows, cols) array -> SimpleITK image with `geometry`."""
    order = _numpy_order(geometry.slice_axis)
    inverse = np.argsort(order)
    raw = np.transpose(array, inverse)
    expected = tuple(reversed(geometry.size))
    if raw.shape != expected:
        raise ValueError(f"array shape {raw.shape} does not match geometry size {expected}")
    if pixel_id is not None and pixel_id != sitk.sitkFloat32:
        raw = _cast_like(raw, pixel_id)
    image = sitk.GetImageFromArray(np.ascontiguousarray(raw))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def _cast_like(raw: np.ndarray, pixel_id: int) -> np.ndarray:
    probe = sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], pixel_id))
    dtype = probe.dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(raw), info.min, info.max).astype(dtype)
    return raw.astype(dtype)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(path: str | os.PathLike, input_path: str | os.PathLike | None = None) -> Path:
    """Fail early, before any heavy work, when OUTPUT cannot be written (or is INPUT)."""
    path = Path(path)
    check_path_text(path, "output")
    name = path.name.lower()
    if not name.endswith(WRITABLE_SUFFIXES):
        raise InputError(f"output {path} has an unsupported extension; use one of "
                         + ", ".join(WRITABLE_SUFFIXES))
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder_ok = folder.is_dir()
    except OSError as exc:
        raise InputError(f"cannot use output folder {folder}: {exc.strerror}") from None
    if not folder_ok:
        raise InputError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"output folder is not writable: {folder}")
    limit = _pathconf(folder, "PC_NAME_MAX", 255)
    if len(os.fsencode(path.name)) > limit:
        raise InputError(f"output file name is {len(os.fsencode(path.name))} bytes long; this "
                         f"file system allows at most {limit}")
    full = os.fsencode(os.path.abspath(path))
    if len(full) >= _pathconf(folder, "PC_PATH_MAX", 4096):
        raise InputError(f"output path is {len(full)} bytes long; too long for this system")
    if path.is_dir():
        raise InputError(f"output {path} is a folder, not a file name")
    if input_path is not None and _same_file(path, Path(input_path)):
        raise InputError(f"output {path} is the input file; choose another name (the input is "
                         "never overwritten)")
    return path


def _pathconf(folder: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(folder, name))
    except (OSError, ValueError):
        return default


def _suffix(path: Path) -> str:
    """The writable suffix of `path`, lower-case (ITK picks its writer by the exact suffix)."""
    name = path.name.lower()
    return next(s for s in sorted(WRITABLE_SUFFIXES, key=len, reverse=True) if name.endswith(s))


def write_atomic(image: sitk.Image, path: str | os.PathLike, provenance: dict[str, str]) -> Path:
    """Write to a temporary name in the same folder, check it, then rename: OUTPUT is either
    complete or untouched. The temporary name is short and lower-case so that long or
    upper-case user names (OUTPUT.NII.GZ) get the right writer and no side files."""
    path = check_writable(path)
    for key, value in provenance.items():
        image.SetMetaData(key, str(value))
    description = "; ".join(f"{k.removeprefix('intersr_')}={v}" for k, v in provenance.items())
    image.SetMetaData("ITK_FileNotes", description[:79])  # NIfTI descrip holds 80 bytes
    temp = path.with_name(f".intersr-{os.getpid()}.partial{_suffix(path)}")
    try:
        try:
            sitk.WriteImage(image, str(temp), useCompression=True)
        except RuntimeError as exc:
            raise _write_failure(path, image, _itk_reason(exc)) from None
        except OSError as exc:
            raise _write_failure(path, image, exc.strerror or str(exc), exc.errno) from None
        reason = filecheck.problem(temp)
        if reason:
            raise _write_failure(path, image, "the written file is incomplete: " + reason)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _write_failure(path: Path, image: sitk.Image, reason: str, code: int | None = None):
    """Name the cause users can act on: a full disk (or quota, or file size limit) first."""
    folder = path.parent if str(path.parent) else Path(".")
    needed = image.GetNumberOfPixels() * image.GetSizeOfPixelComponent() + 4096
    full = disk_full_reason(folder, needed) if code not in (errno.EACCES, errno.EROFS) else ""
    if full or code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ResourceError(f"cannot write {path}: {full or reason}; free space or choose "
                             "another folder")
    return OutputError(f"could not write {path}: {reason}")
