"""The memory model, once (torch-free): what the GUI shows is what the engine enforces.

A run's peak resident memory is a fixed runtime part (Python, numpy, SimpleITK, the inference
backend and the network) plus copies of the input and output volumes as float32: the engine
holds the input and its normalised copy, the output, the rescaled output, the array handed to
the writer and the writer's own image. The constants below were fitted to measured peaks
(`python scripts/measure_memory.py`, see docs/benchmarks.md "Memory"), rounded up.
"""
from __future__ import annotations

from typing import Optional

from .errors import ResourceError
from .grid import Grid

MIB = 2**20
# Runtime: interpreter + numpy/SimpleITK/scipy + torch + network + inference chunks.
RUNTIME_BYTES = {"torch": 700 * MIB, "onnxruntime": 450 * MIB}
OUTPUT_COPIES = 3.5  # float32 copies of the output alive at the peak (write: array + image)
INPUT_COPIES = 3.0  # float32 copies of the input (read image, canonical, normalised)


def voxels(size: tuple[int, ...]) -> int:
    total = 1
    for n in size:
        total *= int(n)
    return total


def required_bytes(grid: Grid, backend: str = "torch") -> int:
    """Peak memory one run of `grid` needs (bytes)."""
    runtime = RUNTIME_BYTES.get(backend, RUNTIME_BYTES["torch"])
    return int(runtime + 4 * (OUTPUT_COPIES * voxels(grid.output_size)
                              + INPUT_COPIES * voxels(grid.input_size)))


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
