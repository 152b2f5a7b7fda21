"""Is an image file complete, and is there room to write one? (No numpy: the Slicer glue
imports this too.)

`problem` checks the voxel bytes a header promises against the file.

Why this exists: ITK zero-fills a short read of a NIfTI file (a truncated download reads as a
valid volume, half blank) and its NIfTI writer reports success when the disk fills up. Both
would give a silent wrong result, so the engine checks every input before reading it and
every output after writing it. Formats covered: NIfTI-1/2 (.nii, .nii.gz), MetaImage (.mha,
.mhd with its data file) and NRRD (.nrrd, .nhdr; raw or gzip encoding). Anything else (DICOM,
unusual encodings) is left to the reader: `problem` returns None when it cannot tell.
`disk_full_reason` tells a full disk (or quota, or file size limit) from other write failures.
"""
from __future__ import annotations

import errno
import gzip
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

_CHUNK = 1 << 20
_MET_SIZES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
              "MET_UINT": 4, "MET_LONG": 8, "MET_ULONG": 8, "MET_LONG_LONG": 8,
              "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}
_NRRD_SIZES = {1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8",
                   "uint8_t", "char"),
               2: ("short", "short int", "signed short", "signed short int", "int16",
                   "int16_t", "ushort", "unsigned short", "unsigned short int", "uint16",
                   "uint16_t"),
               4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32",
                   "uint32_t", "float"),
               8: ("longlong", "long long", "long long int", "signed long long",
                   "signed long long int", "int64", "int64_t", "ulonglong", "unsigned long long",
                   "unsigned long long int", "uint64", "uint64_t", "double")}
_NRRD_TYPE_SIZE = {name: size for size, names in _NRRD_SIZES.items() for name in names}


def problem(path: str | os.PathLike) -> str | None:
    """A short reason when the file is shorter than its header says, else None."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith(".nii.gz"):
            return _nifti(path, compressed=True)
        if name.endswith(".nii"):
            return _nifti(path, compressed=False)
        if name.endswith((".mha", ".mhd")):
            return _metaimage(path)
        if name.endswith((".nrrd", ".nhdr")):
            return _nrrd(path)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        return f"the file is truncated or corrupt ({exc})"
    return None


def _short(have: int, want: int) -> str:
    return f"the file is truncated: it holds {have} of the {want} bytes of voxel data its header promises"


def _stream_length(handle, limit: int | None = None) -> int:
    """Bytes readable from `handle` (stops counting at `limit`)."""
    total = 0
    while limit is None or total < limit:
        block = handle.read(_CHUNK)
        if not block:
            break
        total += len(block)
    return total


def _nifti(path: Path, compressed: bool) -> str | None:
    opener = gzip.open if compressed else open
    with opener(path, "rb") as handle:
        head = handle.read(540)
        if len(head) < 348:
            return "the file is too short to hold a NIfTI header"
        for order in "<>":
            size = struct.unpack(order + "i", head[:4])[0]
            if size == 348:
                dims = struct.unpack(order + "8h", head[40:56])
                bitpix = struct.unpack(order + "h", head[72:74])[0]
                offset = int(struct.unpack(order + "f", head[108:112])[0])
                break
            if size == 540 and len(head) >= 540:
                bitpix = struct.unpack(order + "h", head[14:16])[0]
                dims = struct.unpack(order + "8q", head[16:80])
                offset = struct.unpack(order + "q", head[168:176])[0]
                break
        else:
            return None  # not a NIfTI header we know; the reader will say
        ndim = dims[0]
        if not 1 <= ndim <= 7 or bitpix <= 0:
            return None
        voxels = 1
        for n in dims[1:ndim + 1]:
            voxels *= max(int(n), 1)
        want = voxels * bitpix // 8
        offset = max(offset, 544 if size == 540 else 352)
        if compressed:
            have = len(head) + _stream_length(handle, offset + want - len(head))
        else:
            have = os.path.getsize(path)
    data = max(have - offset, 0)
    return _short(data, want) if data < want else None


def _header_lines(handle, stop) -> tuple[list[str], int]:
    """Text header lines up to and including the one where `stop(line)` is true; byte length."""
    lines, length = [], 0
    while True:
        raw = handle.readline(65536)
        if not raw:
            return lines, length
        length += len(raw)
        line = raw.decode("latin-1").rstrip("\r\n")
        lines.append(line)
        if stop(line):
            return lines, length


def _metaimage(path: Path) -> str | None:
    with open(path, "rb") as handle:
        lines, header = _header_lines(handle, lambda l: l.split("=")[0].strip() == "ElementDataFile")
    fields = {}
    for line in lines:
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip()
    if "ElementDataFile" not in fields or "DimSize" not in fields:
        return "the MetaImage header is incomplete (no DimSize or ElementDataFile)"
    size = _MET_SIZES.get(fields.get("ElementType", ""))
    if size is None:
        return None
    voxels = 1
    for n in fields["DimSize"].split():
        voxels *= int(n)
    want = voxels * size * int(fields.get("ElementNumberOfChannels", "1") or 1)
    source = fields["ElementDataFile"]
    if source == "LOCAL":
        data_path, skip = path, header
    elif any(c in source for c in "%*") or " " in source:
        return None  # lists and patterns of files: leave them to the reader
    else:
        data_path, skip = path.parent / source, 0
        if not data_path.is_file():
            return f"its data file {data_path.name} is missing"
    compressed = fields.get("CompressedData", "False").lower() == "true"
    with open(data_path, "rb") as handle:
        handle.seek(skip)
        if compressed:
            return _inflated_problem(handle, zlib.decompressobj(), want)
        have = os.path.getsize(data_path) - skip
    return _short(have, want) if have < want else None


def _inflated_problem(handle, inflater, want: int) -> str | None:
    """Inflate a zlib/gzip stream; a truncated stream or too few bytes is a problem."""
    have = 0
    while not inflater.eof:
        block = handle.read(_CHUNK)
        if not block:
            break
        have += len(inflater.decompress(block))
    if not inflater.eof:
        return f"the file is truncated: its compressed data stops after {have} of {want} bytes"
    return _short(have, want) if have < want else None


def _nrrd(path: Path) -> str | None:
    with open(path, "rb") as handle:
        magic = handle.read(4)
        if magic != b"NRRD":
            return None
        handle.seek(0)
        lines, header = _header_lines(handle, lambda l: l == "")
        fields = {}
        for line in lines[1:]:
            if line.startswith("#") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.lstrip("=").strip()
        if "data file" in fields or "datafile" in fields or "line skip" in fields \
                or "byte skip" in fields:
            return None  # detached or skipped data: leave it to the reader
        size = _NRRD_TYPE_SIZE.get(fields.get("type", "").lower())
        if size is None or "sizes" not in fields:
            return None
        voxels = 1
        for n in fields["sizes"].split():
            voxels *= int(n)
        want = voxels * size
        encoding = fields.get("encoding", "raw").lower()
        if encoding == "raw":
            have = os.path.getsize(path) - header
            return _short(have, want) if have < want else None
        if encoding in ("gzip", "gz"):
            handle.seek(header)
            return _inflated_problem(handle, zlib.decompressobj(wbits=47), want)
    return None


def disk_full_reason(folder: str | os.PathLike, needed: int) -> str:
    """"" unless writing `needed` bytes in `folder` fails for lack of space, a quota or a file
    size limit. Writers (ITK, VTK) do not pass errno on, and a free-space figure cannot see
    quotas or limits, so after a failed write this asks the file system itself (then deletes
    the probe)."""
    probe = None
    try:
        handle_fd, probe = tempfile.mkstemp(prefix=".intersr-probe-", dir=folder)
        with os.fdopen(handle_fd, "wb") as handle:
            block = bytes(min(needed, 1 << 20))
            left = needed
            while left > 0:
                handle.write(block[:left])
                left -= len(block)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            try:
                free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MB free, "
            except OSError:
                free = ""
            return (f"not enough disk space in {folder} ({exc.strerror}; {free}about "
                    f"{needed / 2**20:.1f} MB needed)")
        return ""
    finally:
        if probe:
            Path(probe).unlink(missing_ok=True)
    return ""
