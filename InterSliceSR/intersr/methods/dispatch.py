"""The torch part of a run: device, initial network, the chosen method, its inference backend.

Imported only when a run uses torch (adaptation, or `--backend torch`): the rest of the
pipeline is torch-free so that `--no-adapt` runs on ONNX Runtime alone.
"""
from __future__ import annotations

import copy
import importlib
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import ResourceError, WeightsError
from ..networks.backends import (Backend, OrtBackend, PerPlane, TorchBackend, pick_device,
                                 shipped_ort)
from ..networks.network import NetConfig, build_network
from ..networks.weights import load_pretrained
from ..options import ADAPT_BATCH, RunOptions, adapts, budget_for, cpu_threads, ort_threads
from ..progress import Progress
from ..volumes.grid import fine_inplane_axes
from . import METHODS
from .results import AdaptResult
from .self_supervised import AdaptConfig


def initial_model(options: RunOptions, log: Callable[[str], None]) -> tuple[torch.nn.Module, str]:
    """The shipped (or given) pretrained network; `--weights none` starts from scratch."""
    pretrained = load_pretrained(options.weights)
    if pretrained is None:
        log("intersr: --weights none: starting from scratch (results need a longer adaptation)")
        torch.manual_seed(options.seed)
        return build_network(NetConfig(design=options.design)), ""
    return pretrained.model, pretrained.sha256


def adapt_config(options: RunOptions, device: torch.device,
                 keep_at: tuple[int, ...] = ()) -> AdaptConfig:
    budget = budget_for(options, device.type)
    return AdaptConfig(steps=budget.steps, seconds=budget.seconds,
                       batch=ADAPT_BATCH[device.type], seed=options.seed, keep_at=keep_at)


def adapted_backend(options: RunOptions, normalised: np.ndarray,
                    spacing3: tuple[float, float, float], thickness: float, factor: float,
                    use_ort: bool, progress: Progress, workdir: str | None = None,
                    ort_on_cpu: bool = False, profiles: list | None = None,
                    target_spacing: float | None = None, keep_at: tuple[int, ...] = ()
                    ) -> tuple[Backend, AdaptResult, str, dict[str, str]]:
    """Adapt (unless the options say not to) and return the backend that runs the result.

    Returns (backend, adaptation, weights sha256, extra provenance by short key).
    use_ort: export the (adapted) network to ONNX and run it with ONNX Runtime;
    ort_on_cpu: do so when the run is on the CPU (--backend auto).
    profiles: the slice profile(s) adaptation learns (profile.py); default a Gaussian of
    `thickness`. target_spacing: the requested output spacing (pairs at its resolution).
    keep_at: also keep the weights of these shorter step budgets (AdaptConfig.keep_at).
    """
    device = pick_device(options.device, progress.log)
    torch.manual_seed(options.seed)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(options))
    model, sha = initial_model(options, progress.log)
    # one fine in-plane axis (the other itself thick): adaptation's pairs all lie beside the
    # coarse one, so the planes beside the fine axis keep this initial network (PerPlane)
    fine_axes = fine_inplane_axes(spacing3)
    one_fine = len(fine_axes) == 1 and bool(sha) and adapts(options)
    initial = copy.deepcopy(model) if one_fine else None  # ~0.3 MB
    result = AdaptResult()
    extra: dict[str, str] = {}
    if adapts(options):
        method = importlib.import_module(f".{METHODS[options.method][0]}", __package__)
        result, extra = method.fit_method(model, normalised, spacing3, profiles or thickness, factor,
                                          adapt_config(options, device, keep_at), device,
                                          progress,
                                          target_spacing=target_spacing,
                                          method=options.method)
    ort = use_ort or (ort_on_cpu and device.type == "cpu")
    folder = (workdir or tempfile.mkdtemp(prefix="intersr-onnx-")) if ort else None
    backend = runner(model, device, options, folder, "adapted", use_ort, progress)
    if initial is None or fine_axes[0] in result.beside:  # e.g. VAE pairs: both orientations
        return backend, result, sha, extra
    fine = f"{spacing3[fine_axes[0]]:.3g} mm"
    progress.log(f"intersr: adaptation learned only planes beside the coarse in-plane axis; "
                 f"planes beside the {fine} one keep the pretrained network")
    extra["pretrained_planes"] = f"beside the {fine} in-plane axis"
    second = None
    if isinstance(backend, OrtBackend) and options.weights is None:
        # the shipped network's own, sha256-checked ONNX file: no second export (unless the
        # models folder has none, or one of other weights: then export as for the adapted one)
        try:
            shipped, onnx_sha = shipped_ort(device.type, threads=ort_threads(options), arena=False)
            second = shipped if onnx_sha == sha else None
        except WeightsError:
            pass
    if second is None:
        second = runner(initial, device, options,
                        folder if isinstance(backend, OrtBackend) else None, "initial",
                        use_ort, progress, arena=False)
    return PerPlane(backend, second, result.beside), result, sha, extra


def runner(model: torch.nn.Module, device: torch.device, options: RunOptions,
           folder: str | None, name: str, use_ort: bool, progress: Progress,
           arena: bool = True) -> Backend:
    """The backend that runs `model`: torch, or its ONNX export in `folder` with ONNX Runtime
    (when the export cannot be written: torch, unless ONNX Runtime was asked for). arena=False:
    a second ONNX Runtime session gets no memory arena of its own, so two sessions do not hold
    two chunks' worth of memory (the memory check counts one)."""
    if folder is None:
        return TorchBackend(model, device)
    from ..networks.export import export_onnx
    progress.update("export", 0, 1)
    try:
        path = export_onnx(model, Path(folder) / f"{name}.onnx")
    except OSError as exc:  # e.g. no space for the export: torch can still run the network
        if use_ort:
            raise ResourceError(f"could not write the ONNX export of the {name} network in "
                                f"{folder}: {exc.strerror or exc}") from None
        progress.log(f"intersr: could not export to ONNX ({exc.strerror or exc}); "
                     "inference with torch")
        return TorchBackend(model, device)
    config = getattr(model, "config", NetConfig())
    backend = OrtBackend(path, device.type, threads=ort_threads(options),
                         channels=config.channels, hidden=config.hidden, arena=arena)
    progress.update("export", 1, 1)
    return backend
