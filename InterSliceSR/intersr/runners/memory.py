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

import os
import sys
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
# --confidence: while its features are computed, the two passes' spread, the score, one feature
# and one filter temporary (measured with tracemalloc: Testing/test_confidence.py); the map
# itself stays alive beside the output until both are written
CONFIDENCE_COPIES = 4.0


def voxels(size: tuple[int, ...]) -> int:
    total = 1
    for n in size:
        total *= int(n)
    return total


def required_bytes(grid: Grid, backend: str = "torch", confidence: bool = False) -> int:
    """Peak memory one run of `grid` needs (bytes): the number the GUI shows and the engine
    enforces (`confidence`: with the confidence map)."""
    backend = backend if backend in RUNTIME_BYTES else "torch"
    out = 4 * voxels(grid.output_size)
    inp = 4 * voxels(grid.input_size)
    inference = CHUNK_PEAK_BYTES[backend]
    writing = WRITE_COPIES * out
    if confidence:
        return int(RUNTIME_BYTES[backend] + max(inference, writing, CONFIDENCE_COPIES * out)
                   + 2 * out + INPUT_COPIES * inp)
    return int(RUNTIME_BYTES[backend] + max(inference, writing) + out + INPUT_COPIES * inp)


def _meminfo_available() -> Optional[int]:
    """Linux: MemAvailable from /proc/meminfo."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _windows_available() -> Optional[int]:
    """Windows: ullAvailPhys of GlobalMemoryStatusEx (ctypes, standard library)."""
    import ctypes

    class MemoryStatusEx(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

    status = MemoryStatusEx()
    status.dwLength = ctypes.sizeof(MemoryStatusEx)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return None
    return int(status.ullAvailPhys)


def _vm_stat_available(text: Optional[str] = None) -> Optional[int]:
    """macOS: free + inactive + speculative pages of `vm_stat` (what the system can give
    without swapping, as Activity Monitor counts it), times the page size it states."""
    import re
    import subprocess

    if text is None:
        try:
            text = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    page = re.search(r"page size of (\d+) bytes", text)
    pages = {m.group(1).lower(): int(m.group(2)) for m in re.finditer(r"Pages (\w+):\s+(\d+)", text)}
    if page is None or "free" not in pages:
        return None
    return int(page.group(1)) * sum(pages.get(k, 0) for k in ("free", "inactive", "speculative"))


def _sysconf_available() -> Optional[int]:
    """Other POSIX systems that have it: available physical pages times the page size."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def available_bytes() -> Optional[int]:
    """Memory the system can give now, in bytes: psutil when installed, else a standard-library
    call for this platform (/proc/meminfo on Linux, GlobalMemoryStatusEx on Windows, vm_stat on
    macOS, sysconf elsewhere). None when none of them answers: the check is then skipped."""
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    if sys.platform.startswith("win"):
        probes = (_windows_available,)
    elif sys.platform == "darwin":
        probes = (_vm_stat_available, _sysconf_available)
    else:
        probes = (_meminfo_available, _sysconf_available)
    for probe in probes:
        try:
            value = probe()
        except Exception:  # a probe that cannot run here is no answer, never an error
            value = None
        if value:
            return value
    return None


def check(grid: Grid, backend: str = "torch", available: Optional[int] = None,
          confidence: bool = False) -> int:
    """Refuse up front when the run cannot fit; returns the bytes it needs (no refusal when
    the available memory cannot be told on this system)."""
    needed = required_bytes(grid, backend, confidence)
    available = available_bytes() if available is None else available
    if available is not None and needed > available:
        raise ResourceError(f"the run needs about {needed / 2**30:.2f} GB of memory but only "
                            f"{available / 2**30:.2f} GB is available; choose a coarser "
                            "--spacing, crop the volume, or free memory")
    return needed
