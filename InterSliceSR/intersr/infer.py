"""Inference: apply the network across slices, plane by plane, in bounded-memory chunks.

The volume (slices, rows, cols) is processed as (slices x cols) planes for every row and as
(slices x rows) planes for every col; the two results are averaged. Chunks are sized from a
memory budget; on CUDA an out-of-memory error halves the chunk and retries.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import ResourceError
from .progress import Progress

CPU_CHUNK_BYTES = 768 * 2**20
CUDA_CHUNK_BYTES = 4 * 2**30


def plane_bytes(n_slices: int, n_out: int, width: int, channels: int, hidden: int) -> int:
    """Rough activation memory of one plane through the network (float32)."""
    return 4 * width * (n_slices * channels * 6 + n_out * (2 * channels + 4 + 3 * hidden + 4))


def _run_planes(model: torch.nn.Module, planes: np.ndarray, positions: torch.Tensor,
                factor: float, blur: float, device: torch.device) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(planes)).unsqueeze(1).to(device)
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                y = model(x, positions, factor, blur)
        else:
            y = model(x, positions, factor, blur)
    return y.squeeze(1).float().cpu().numpy()


def super_resolve(model: torch.nn.Module, volume: np.ndarray, positions: np.ndarray,
                  factor: float, blur: float, device: torch.device,
                  progress: Progress | None = None, chunk_bytes: int | None = None) -> np.ndarray:
    """(n, R, C) normalised thick-slice volume -> (m, R, C) at the given slice positions."""
    n, rows, cols = volume.shape
    m = len(positions)
    model = model.to(device).eval()
    pos = torch.as_tensor(positions, dtype=torch.float32, device=device)
    config = getattr(model, "config", None)
    channels = getattr(config, "channels", 32)
    hidden = getattr(config, "hidden", 64)
    budget = chunk_bytes or (CUDA_CHUNK_BYTES if device.type == "cuda" else CPU_CHUNK_BYTES)
    out = np.zeros((m, rows, cols), np.float32)
    # (axis of planes, plane width): planes along rows are (slices x cols) and vice versa
    passes = [(1, cols), (2, rows)]
    total = rows + cols
    done = 0
    for axis, width in passes:
        chunk = max(1, int(budget // plane_bytes(n, m, width, channels, hidden)))
        count = volume.shape[axis]
        start = 0
        while start < count:
            stop = min(start + chunk, count)
            planes = np.moveaxis(volume.take(np.arange(start, stop), axis=axis), axis, 0)
            try:
                result = _run_planes(model, planes, pos, factor, blur, device)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if chunk == 1:
                    raise ResourceError("the GPU ran out of memory even for a single plane; "
                                        "use --device cpu or a coarser --spacing") from None
                chunk = max(1, chunk // 2)
                continue
            target = np.moveaxis(out, axis, 0)
            target[start:stop] += result
            done += stop - start
            start = stop
            if progress is not None:
                progress.update("infer", done, total)
    out *= 0.5
    return out
