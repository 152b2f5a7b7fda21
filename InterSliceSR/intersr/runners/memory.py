"""The memory model, once (torch-free): what the GUI shows is what the engine enforces.

A run's peak resident memory is the larger of two phases, on top of a fixed runtime part
(interpreter, numpy/SimpleITK/scipy, the backend's library and the network):
- inference: one chunk of planes through the network (the backend's chunk budget, or the whole
  volume when that is smaller), the output, and the input twice (as read, normalised);
- writing: the output, its reordered copy for the writer and the writer's own image (float32
  in the worst case), with the input twice.
The constants were fitted to measured peaks, `python scripts/measure_memory.py` (numbers and
command in docs/benchmarks.md, "Memory"), and rounded up.
"""
from __future__ import annotations

from typing import Optional

from ..errors import ResourceError
from ..volumes.grid import Grid

MIB = 2**20
# Interpreter + libraries + backend + network, measured on tiny volumes minus their arrays.
RUNTIME_BYTES = {"torch": 360 * MIB, "onnxruntime": 200 * MIB}
# Activations of one inference chunk at the CPU chunk budget (backends.CPU_CHUNK_BYTES, 128 MiB
# of estimated activations), as measured: the framework's own buffers come on top.
CHUNK_PEAK_BYTES = {"torch": 240 * MIB, "onnxruntime": 200 * MIB}
WRITE_COPIES = 3.0  # float32 output copies alive while writing, beyond the output itself
INPUT_COPIES = 2.0  # float32 copies of the input kept during a run


def voxels(size: tuple[int, ...]) -> int:
    total = 1
    for n in size:
        total *= int(n)
    return total


def required_bytes(grid: Grid, backend: str = "torch") -> int:
    """Peak memory one run of `grid` needs (bytes): the number the GUI shows and the engine
    enforces."""
    backend = backend if backend in RUNTIME_BYTES else "torch"
    out = 4 * voxels(grid.output_size)
    inp = 4 * voxels(grid.input_size)
    inference = CHUNK_PEAK_BYTES[backend]
    writing = WRITE_COPIES * out
    return int(RUNTIME_BYTES[backend] + max(inference, writing) + out + INPUT_COPIES * inp)


def available_bytes() -> int:
    """Memory the system can give now (psutil when installed, /proc/meminfo otherwise)."""
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    raise ResourceError("cannot tell how much memory is available (install psutil)")


def check(grid: Grid, backend: str = "torch", available: Optional[int] = None) -> int:
    """Refuse up front when the run cannot fit; returns the bytes it needs."""
    needed = required_bytes(grid, backend)
    available = available_bytes() if available is None else available
    if needed > available:
        raise ResourceError(f"the run needs about {needed / 2**30:.2f} GB of memory but only "
                            f"{available / 2**30:.2f} GB is available; choose a coarser "
                            "--spacing, crop the volume, or free memory")
    return needed
