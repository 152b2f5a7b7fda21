"""Writing: the output is written to a temporary name and renamed, so it is never half-written."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError, OutputError, ResourceError
from . import filecheck
from .filecheck import disk_full_reason
from .read import _itk_reason, check_path_text

WRITABLE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")  # single-file formats: atomic rename


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """The same file (or the same name, for files not yet there)."""
    a, b = Path(a), Path(b)
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
    if input_path is not None and same_file(path, input_path):
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


def write_atomic(image: sitk.Image, path: str | os.PathLike, provenance: dict[str, str],
                 compress: bool = True) -> Path:
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
            sitk.WriteImage(image, str(temp), useCompression=compress)
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
