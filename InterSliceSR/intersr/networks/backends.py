"""Inference backends behind one small interface: run the network on a batch of planes.

`TorchBackend` runs the torch module (CPU or CUDA, fp16 autocast on CUDA); `OrtBackend` runs
the ONNX export with ONNX Runtime (CUDA execution provider when there is one, CPU otherwise).
This module imports neither at import time: a machine without torch can still use ORT.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError, ResourceError

# Activation budget per chunk of planes. On the CPU a larger chunk is no faster (measured:
# 128 MiB and 768 MiB chunks take the same time) but costs its memory: see memory.py.
CPU_CHUNK_BYTES = 128 * 2**20
CUDA_CHUNK_BYTES = 4 * 2**30


def installed(name: str) -> bool:
    """True when `name` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class Backend:
    """Run the network on planes: (B, n, W) thick slices -> (B, m, W) at `positions`."""

    name = "?"
    device = "cpu"
    chunk_bytes = CPU_CHUNK_BYTES
    channels = 32
    hidden = 64

    def run_planes(self, planes: np.ndarray, positions: np.ndarray, factor: float,
                   blur: float) -> np.ndarray:
        raise NotImplementedError

    def out_of_memory(self, exc: BaseException) -> bool:
        """True when `exc` means the device ran out of memory (retry with smaller chunks)."""
        return False

    def describe(self) -> str:
        return f"{self.name} on {self.device}"

    def beside(self, axis: int) -> "Backend":
        """The backend for planes that lie beside in-plane axis `axis` (1 rows, 2 cols)."""
        return self


class PerPlane(Backend):
    """The adapted network where adaptation learned planes like these, the initial one elsewhere.

    With one fine in-plane axis, adaptation's pairs all lie beside the coarse one; planes beside
    the fine axis are unlike anything it saw, and fine-tuning on the others made them worse
    (measured: docs/benchmarks.md, "Sub-mm clinical series"), so they keep the initial network.
    """

    def __init__(self, adapted: Backend, initial: Backend, learned: tuple[int, ...]):
        self.adapted, self.initial, self.learned = adapted, initial, tuple(learned)
        self.name, self.device = adapted.name, adapted.device
        self.chunk_bytes, self.channels, self.hidden = (adapted.chunk_bytes, adapted.channels,
                                                        adapted.hidden)

    def beside(self, axis: int) -> Backend:
        return self.adapted if axis in self.learned else self.initial

    def run_planes(self, planes, positions, factor, blur):
        raise TypeError("PerPlane runs planes through beside(axis)")

    def describe(self) -> str:
        return self.adapted.describe()


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: Any, device: Any):
        import torch
        self.torch = torch
        self.device_obj = torch.device(device) if isinstance(device, str) else device
        self.device = self.device_obj.type
        self.model = model.to(self.device_obj).eval()
        config = getattr(model, "config", None)
        self.channels = getattr(config, "channels", 32)
        self.hidden = getattr(config, "hidden", 64)
        self.chunk_bytes = CUDA_CHUNK_BYTES if self.device == "cuda" else CPU_CHUNK_BYTES
        self._positions: tuple[int, Any] | None = None

    def run_planes(self, planes, positions, factor, blur):
        torch = self.torch
        if self._positions is None or self._positions[0] != id(positions):
            pos = torch.as_tensor(positions, dtype=torch.float32, device=self.device_obj)
            self._positions = (id(positions), pos)
        pos = self._positions[1]
        x = torch.from_numpy(np.ascontiguousarray(planes, np.float32)).unsqueeze(1)
        x = x.to(self.device_obj)
        with torch.inference_mode():
            if self.device == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    y = self.model(x, pos, factor, blur)
            else:
                y = self.model(x, pos, factor, blur)
        return y.squeeze(1).float().cpu().numpy()

    def out_of_memory(self, exc):
        if isinstance(exc, self.torch.cuda.OutOfMemoryError):
            self.torch.cuda.empty_cache()
            return True
        return False


def probe_device(device) -> None:
    """Run a tiny convolution with a backward pass on `device`: a CUDA build without kernels for
    this GPU ("no kernel image"), a too old driver or a full GPU fails here, at start."""
    import torch
    x = torch.ones(1, 1, 8, 8, device=device, requires_grad=True)
    weight = torch.ones(1, 1, 3, 3, device=device)
    torch.nn.functional.conv2d(x, weight).sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def pick_device(name: str, log: Callable[[str], None] | None = None):
    """The PyTorch device for `--device` (auto: CUDA when PyTorch sees a GPU that works), for
    runs and training alike; here, not in methods.dispatch, so training needs no SimpleITK.

    A GPU that PyTorch lists but cannot use (probe_device fails): auto falls back to the CPU
    with one line in the log; an explicit --device cuda is an error that says why."""
    import torch
    requested = name
    if name == "cuda" and not torch.cuda.is_available():
        raise ResourceError("--device cuda was requested but no CUDA GPU is available to "
                            f"PyTorch {torch.__version__}; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    try:
        probe_device(device)
    except Exception as exc:  # RuntimeError, torch.cuda.OutOfMemoryError, AcceleratorError...
        reason = _first_line(exc)
        if requested == "cuda":
            raise ResourceError(f"the CUDA GPU cannot run PyTorch {torch.__version__} ({reason}); "
                                "use --device cpu") from None
        if log is not None:
            log(f"intersr: the CUDA GPU failed at start ({reason}); falling back to the CPU")
        return torch.device("cpu")
    # TF32 matrix products on GPUs that have them (Ampere and later) for the network's
    # convolutions and MLP; the CPU path is unaffected. Its effect on quality and speed is not
    # yet measured (no GPU was lent when this was written; docs/benchmarks.md, Speed).
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return device


def ort_providers(device: str) -> list[str]:
    """Execution providers for `device` (auto: CUDA when this onnxruntime build has it)."""
    import onnxruntime
    available = onnxruntime.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ResourceError("--device cuda was requested but this ONNX Runtime has no CUDA "
                            "execution provider (install onnxruntime-gpu instead of "
                            "onnxruntime, never both); use --device cpu or auto")
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, device: str = "auto", threads: int = 0,
                 channels: int = 32, hidden: int = 64, arena: bool = True):
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # the memory arena stays (faster; bounded by the chunk budget) unless a second session
        # would hold another one (PerPlane's initial network)
        options.enable_cpu_mem_arena = arena
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(model_path), options,
                                                    providers=ort_providers(device))
        self.device = "cuda" if self.session.get_providers()[0].startswith("CUDA") else "cpu"
        self.chunk_bytes = CUDA_CHUNK_BYTES if self.device == "cuda" else CPU_CHUNK_BYTES
        self.channels, self.hidden = channels, hidden
        self.version = onnxruntime.__version__

    def run_planes(self, planes, positions, factor, blur):
        feeds = {"lr": np.ascontiguousarray(planes, np.float32)[:, None],
                 "positions": np.asarray(positions, np.float32),
                 "factor": np.asarray(factor, np.float32),
                 "blur": np.asarray(blur, np.float32)}
        return self.session.run(None, feeds)[0][:, 0]

    def out_of_memory(self, exc):
        return self.device == "cuda" and "out of memory" in str(exc).lower()


def shipped_ort(device: str = "auto", threads: int = 0, arena: bool = True) -> tuple[OrtBackend, str]:
    """The shipped network's ONNX export (sha256-verified, `resources.shipped_onnx`) on ONNX
    Runtime, and the shipped weights' sha256: no export needed to run the pretrained network."""
    from ..resources import shipped_onnx
    path, sha, entry = shipped_onnx()
    config = entry.get("config", {})
    return OrtBackend(path, device, threads=threads, channels=config.get("channels", 32),
                      hidden=config.get("hidden", 64), arena=arena), sha


@dataclass(frozen=True)
class Choice:
    """Which backend a run uses and why (the reason goes into the log)."""

    backend: str  # "torch" or "onnxruntime"
    adapt_with_torch: bool
    reason: str
    ort_on_cpu: bool = False  # auto: adapt with torch, then infer with ORT when on the CPU


def choose(requested: str, adapting: bool, torch_ok: bool | None = None,
           ort_ok: bool | None = None) -> Choice:
    """The backend for a run, or an InputError that says what to install or change.

    auto: torch for adaptation when it is installed, and on the CPU the (adapted) network is
    exported and run with ONNX Runtime when that is installed too (several times faster there,
    export ~3 s: docs/benchmarks.md "Backends"); on CUDA torch runs it (ORT's CUDA execution
    provider was not measured). Without torch, ONNX Runtime alone, only without adaptation.
    """
    torch_ok = installed("torch") if torch_ok is None else torch_ok
    ort_ok = installed("onnxruntime") if ort_ok is None else ort_ok
    if adapting and not torch_ok:
        raise InputError("adaptation (fine-tuning) needs PyTorch, which is not installed: "
                         "give --no-adapt to run the shipped network with ONNX Runtime, or "
                         "install torch (pip install 'intersr[torch]')")
    if requested == "torch" and not torch_ok:
        raise InputError("--backend torch: PyTorch is not installed (pip install "
                         "'intersr[torch]'), or use --backend onnxruntime --no-adapt")
    if requested == "onnxruntime" and not ort_ok:
        raise InputError("--backend onnxruntime: onnxruntime is not installed (pip install "
                         "onnxruntime, or onnxruntime-gpu for CUDA)")
    if requested == "auto" and not (torch_ok or ort_ok):
        raise InputError("no inference backend: install torch (pip install 'intersr[torch]') "
                         "or onnxruntime (pip install onnxruntime)")
    if requested == "onnxruntime":
        return Choice("onnxruntime", adapting, "requested with --backend onnxruntime"
                      + (" (the adapted network is exported to ONNX)" if adapting else ""))
    if requested == "torch":
        return Choice("torch", adapting, "requested with --backend torch")
    if torch_ok:
        return Choice("torch", adapting, "auto: PyTorch for adaptation"
                      + (", ONNX Runtime for inference on the CPU" if ort_ok else ""),
                      ort_on_cpu=ort_ok)
    return Choice("onnxruntime", False, "auto: PyTorch is not installed, ONNX Runtime runs the "
                  "shipped network without fine-tuning")
