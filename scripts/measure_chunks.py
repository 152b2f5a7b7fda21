"""Inference chunk size vs time and peak memory, in-process, for one backend.

    python scripts/measure_chunks.py torch 768       # chunk budget in MiB
    python scripts/measure_chunks.py onnxruntime 128

Runs `infer.super_resolve` on a random 20 x 128 x 128 volume at x4 (80 output slices) with the
shipped network and prints the seconds and the process's peak RSS (getrusage). Run each
setting in a fresh process: peak RSS never goes down.
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "InterSliceSR"))

from intersr.backends import OrtBackend, TorchBackend  # noqa: E402
from intersr.infer import super_resolve  # noqa: E402


def main() -> int:
    name, chunk_mib = sys.argv[1], int(sys.argv[2])
    if name == "torch":
        from intersr.weights import load_pretrained
        backend = TorchBackend(load_pretrained().model, "cpu")
    else:
        from intersr.resources import shipped_onnx
        backend = OrtBackend(shipped_onnx()[0], "cpu")
    volume = np.random.default_rng(0).random((20, 128, 128), dtype=np.float32)
    positions = (np.arange(80) + 0.5) / 4 - 0.5
    start = time.monotonic()
    super_resolve(backend, volume, positions, 4.0, 1.0, chunk_bytes=chunk_mib * 2**20)
    seconds = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name} chunk {chunk_mib} MiB: {seconds:.1f} s, peak RSS {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
