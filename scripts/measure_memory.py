"""Measure the peak resident memory of `intersr run` against intersr.runners.memory's model.

Each run is a fresh subprocess (`python -m intersr run ... --no-adapt` unless --adapt-steps),
on a synthetic int16 volume at 1 x 1 x 4 mm (x4 to isotropic); its peak RSS comes from
getrusage in a wrapper process that runs only that one child. Prints one JSON line per size
with the measured peak, the model's estimate and their ratio, and writes them to --out.

    python scripts/measure_memory.py --sizes 128,128,20 192,192,30 256,256,40 --out docs/results/memory.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "InterSliceSR"))

from intersr.runners import memory  # noqa: E402
from intersr.volumes.grid import plan  # noqa: E402

WRAPPER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")


def volume(size: tuple[int, int, int]) -> sitk.Image:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 1000, size=tuple(reversed(size)), dtype=np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 4.0))
    return image


def measure(size: tuple[int, int, int], extra: list[str], backend: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.nrrd", Path(tmp) / "out.nrrd"
        sitk.WriteImage(volume(size), str(src))
        command = [sys.executable, "-m", "intersr", "run", str(src), str(dst), "--progress",
                   "none", "--device", "cpu", "--backend", backend, *extra]
        out = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True,
                             text=True, check=True).stdout.split()
    peak, code = int(out[-2]) * 1024, int(out[-1])
    grid = plan(size, (1.0, 1.0, 4.0))
    model = memory.required_bytes(grid, "torch" if backend == "auto" else backend)
    return {"size": list(size), "output_size": list(grid.output_size), "backend": backend,
            "options": extra, "exit_code": code, "peak_mib": round(peak / 2**20),
            "model_mib": round(model / 2**20), "model_over_peak": round(model / peak, 3),
            "output_f32_mib": round(4 * memory.voxels(grid.output_size) / 2**20)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["128,128,20", "192,192,30", "256,256,40"])
    parser.add_argument("--adapt-steps", type=int, default=None)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--out", default=None, help="append the results to this JSON file")
    args = parser.parse_args()
    extra = ["--no-adapt"] if args.adapt_steps is None else ["--adapt-steps", str(args.adapt_steps)]
    results = []
    for text in args.sizes:
        size = tuple(int(v) for v in text.split(","))
        results.append(measure(size, extra, args.backend))
        print(json.dumps(results[-1]), flush=True)
    if args.out:
        path = Path(args.out)
        old = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(old + results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
