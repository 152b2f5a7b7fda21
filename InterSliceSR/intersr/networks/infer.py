"""Inference: apply the network across slices, plane by plane, in bounded-memory chunks.

The volume (slices, rows, cols) is processed as (slices x cols) planes for every row and as
(slices x rows) planes for every col; the two results are averaged. Chunks are sized from the
backend's memory budget; when the device runs out of memory the chunk is halved and retried.
Torch-free: the network runs behind `intersr.backends.Backend` (torch or ONNX Runtime).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ResourceError
from ..progress import Progress
from .backends import Backend, TorchBackend


def plane_bytes(n_slices: int, n_out: int, width: int, channels: int, hidden: int) -> int:
    """Rough activation memory of one plane through the network (float32)."""
    return 4 * width * (n_slices * channels * 6 + n_out * (2 * channels + 4 + 3 * hidden + 4))


def super_resolve(model: Any, volume: np.ndarray, positions: np.ndarray, factor: float,
                  blur: float, device: Any = None, progress: Progress | None = None,
                  chunk_bytes: int | None = None, spread: bool = False) -> Any:
    """(n, R, C) normalised thick-slice volume -> (m, R, C) at the given slice positions.

    model: a `Backend` (`Backend.beside` picks the one for each pass), or a torch module (then
    run on `device` by a TorchBackend).
    spread: also return |row pass - col pass| (a free test-time variant: the confidence map's
    main feature), as (output, spread); costs one more output-sized array, no network pass.
    """
    backend = model if isinstance(model, Backend) else TorchBackend(model, device or "cpu")
    n, rows, cols = volume.shape
    m = len(positions)
    positions = np.asarray(positions, np.float32)
    budget = chunk_bytes or backend.chunk_bytes
    out = np.zeros((m, rows, cols), np.float32)
    first = np.zeros_like(out) if spread else out  # the row pass, kept apart when asked
    # (axis of planes, plane width): planes along rows are (slices x cols) and vice versa
    passes = [(1, cols), (2, rows)]
    total = rows + cols
    done = 0
    for index, (axis, width) in enumerate(passes):
        runner = backend.beside(3 - axis)  # planes along rows lie beside the cols, and back
        chunk = max(1, int(budget // plane_bytes(n, m, width, runner.channels, runner.hidden)))
        count = volume.shape[axis]
        start = 0
        while start < count:
            stop = min(start + chunk, count)
            planes = np.moveaxis(volume.take(np.arange(start, stop), axis=axis), axis, 0)
            try:
                result = runner.run_planes(planes, positions, factor, blur)
            except Exception as exc:
                if not runner.out_of_memory(exc):
                    raise
                if chunk == 1:
                    raise ResourceError("the GPU ran out of memory even for a single plane; "
                                        "use --device cpu or a coarser --spacing") from None
                chunk = max(1, chunk // 2)
                continue
            target = np.moveaxis(first if index == 0 else out, axis, 0)
            target[start:stop] += result
            done += stop - start
            start = stop
            if progress is not None:
                progress.update("infer", done, total)
    if spread:  # first: row pass a, out: col pass b -> out (a + b) / 2, first |a - b|
        first -= out
        out += 0.5 * first
        np.abs(first, out=first)
        return out, first
    out *= 0.5
    return out
