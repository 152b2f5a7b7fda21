"""InterSliceSR engine: self-supervised inter-slice super-resolution of thick-slice MR volumes.

The public API, for Slicer's Python console and scripts (importing it loads neither torch nor
Qt/Slicer; each name is imported on first use)::

    import intersr

    options = intersr.make_options(budget="fast", seed=0)    # every `intersr run` flag, by name
    result = intersr.run("thick.nii.gz", "iso.nrrd", options)  # written atomically
    print(intersr.describe(result))

    volume = intersr.load_volume("thick.nii.gz")             # a checked, canonical Volume
    result = intersr.super_resolve_volume(volume, options)   # in memory, nothing written
    intersr.write_volume(result, "iso.nrrd", like=volume)

    report = intersr.batch("study/", "study-iso/", options, report="report.csv")  # a cohort
    intersr.fuse(["ax.nii.gz", "cor.nii.gz", "sag.nii.gz"], "fused.nrrd", options,
                 intersr.FuseSettings())                   # several series -> one volume
    print(report.summary())                                  # failed volumes: rows, not raises

Layers, each importing only those below it: `cli`, `bench`, `training` -> `runners` ->
`methods` -> `networks`, `acquisition` -> `volumes` -> the shared vocabulary at this level
(`errors`, `options`, `progress`, `protocol`, `resources`). docs/architecture.md has the picture.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_API = {
    "run": "runners.pipeline",
    "batch": "runners.batch",
    "fuse": "runners.fuse",
    "FuseSettings": "runners.fuse",
    "super_resolve_volume": "runners.pipeline",
    "describe": "runners.pipeline",
    "write_volume": "runners.pipeline",
    "load_volume": "volumes.read",
    "Volume": "volumes.geometry",
    "RunOptions": "options",
    "make_options": "options",
    "RunResult": "methods.results",
    "InterSRError": "errors",
    "InputError": "errors",
}
_RENAMED = {"make_options": "make", "fuse": "fuse_files"}  # public name -> name in its module
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'intersr' has no attribute {name!r}")
    module = importlib.import_module(f".{_API[name]}", __name__)
    value = getattr(module, _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
