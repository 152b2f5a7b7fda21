"""The bench's pictures: through-plane panels (reference | baselines | InterSliceSR) as PNG."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ..acquisition.metrics import Intensity


def write_png(path: Path, gray: np.ndarray) -> None:
    """Minimal 8-bit grayscale PNG writer (no imaging dependency)."""
    data = np.clip(gray * 255 + 0.5, 0, 255).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in data)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", data.shape[1], data.shape[0], 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def through_plane_panel(arrays: list[np.ndarray], np_axis: int, intensity: Intensity,
                        upsample: int = 2) -> np.ndarray:
    """The same through-plane slice (containing the thick axis, vertical) of each array."""
    other = 2 if np_axis != 2 else 1
    fixed = 3 - np_axis - other
    panels = []
    for array in arrays:
        index = array.shape[fixed] // 2
        plane = np.moveaxis(array, (fixed, np_axis, other), (0, 1, 2))[index]
        plane = np.clip(intensity.apply(plane), 0, 1)[::-1]
        plane = np.kron(plane, np.ones((upsample, upsample)))
        panels.append(np.pad(plane, ((0, 0), (0, 4)), constant_values=1.0))
    return np.concatenate(panels, axis=1)
