"""`intersr info [--json]`: versions, backends, devices and GPUs, without importing torch.

torch's view of CUDA is asked in a short subprocess (importing torch takes seconds and
hundreds of MB; the Slicer module calls this instead of importing torch into Slicer).
onnxruntime is light and imported here for its execution providers.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
from typing import Any

from .. import __version__
from ..resources import SAMPLE, manifest_entry, models_dir, sha256_of

PACKAGES = ("numpy", "SimpleITK", "scipy", "psutil", "torch", "onnxruntime", "onnxruntime-gpu",
            "onnx")
TORCH_PROBE = r"""
import json
import torch
info = {"version": torch.__version__, "cuda": bool(torch.cuda.is_available()),
        "cuda_version": torch.version.cuda, "gpus": []}
for i in range(torch.cuda.device_count() if info["cuda"] else 0):
    p = torch.cuda.get_device_properties(i)
    info["gpus"].append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1)})
print(json.dumps(info))
"""


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_info(timeout: float = 120.0) -> dict[str, Any]:
    """torch's version and CUDA devices, asked in a subprocess."""
    if importlib.util.find_spec("torch") is None:
        return {"installed": False}
    try:
        proc = subprocess.run([sys.executable, "-c", TORCH_PROBE], capture_output=True,
                              text=True, timeout=timeout)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return {"installed": True, "error": f"torch could not be queried: {exc}"}
    return {"installed": True, **info}


def onnxruntime_info() -> dict[str, Any]:
    if importlib.util.find_spec("onnxruntime") is None:
        return {"installed": False}
    try:
        import onnxruntime
        providers = list(onnxruntime.get_available_providers())
    except Exception as exc:  # a broken install: report it, do not crash `info`
        return {"installed": True, "error": str(exc)}
    return {"installed": True, "version": onnxruntime.__version__, "providers": providers,
            "cuda": "CUDAExecutionProvider" in providers}


def nvidia_smi_gpus() -> list[dict[str, Any]]:
    """GPUs the driver reports (works without torch)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mib = line.rpartition(",")
        try:
            gpus.append({"name": name.strip(), "memory_gib": round(float(mib) / 1024, 1)})
        except ValueError:
            continue
    return gpus


def weights_info() -> dict[str, Any]:
    folder = models_dir()
    try:
        entry = manifest_entry(folder)
        ok = sha256_of(folder / entry["file"]) == entry["sha256"]
    except Exception as exc:  # report, never raise: `info` is a diagnosis tool
        return {"folder": str(folder), "ok": False, "error": str(exc)}
    return {"folder": str(folder), "file": entry["file"], "sha256": entry["sha256"], "ok": ok,
            "onnx": entry.get("onnx")}


def collect(probe_torch: bool = True) -> dict[str, Any]:
    torch = torch_info() if probe_torch else {"installed": importlib.util.find_spec("torch")
                                              is not None, "probed": False}
    ort = onnxruntime_info()
    gpus = torch.get("gpus") or nvidia_smi_gpus()
    devices = ["cpu"] + (["cuda"] if torch.get("cuda") or ort.get("cuda") else [])
    backends = [name for name, info in (("torch", torch), ("onnxruntime", ort))
                if info.get("installed") and "error" not in info]
    return {
        "intersr": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "backends": backends,
        "devices": devices,
        "gpus": gpus,
        "torch": torch,
        "onnxruntime": ort,
        # With both wheels installed, onnxruntime silently runs on the CPU.
        "onnxruntime_conflict": bool(_version("onnxruntime") and _version("onnxruntime-gpu")),
        "weights": weights_info(),
        "sample": str(SAMPLE),
    }


def format_text(info: dict[str, Any]) -> str:
    lines = [f"intersr {info['intersr']} (Python {info['python']}, {info['platform']})"]
    lines.append("packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v))
    lines.append("backends: " + (", ".join(info["backends"]) or "none (install torch or "
                                 "onnxruntime)"))
    lines.append("devices: " + ", ".join(info["devices"]))
    for gpu in info["gpus"]:
        lines.append(f"GPU: {gpu['name']}, {gpu['memory_gib']} GiB")
    if info["onnxruntime_conflict"]:
        lines.append("warning: both onnxruntime and onnxruntime-gpu are installed; ONNX Runtime "
                     "then runs on the CPU only: uninstall one of them")
    w = info["weights"]
    lines.append(f"weights: {w.get('file', '?')} sha256 {w.get('sha256', '?')[:12]}... "
                 + ("ok" if w.get("ok") else f"NOT OK {w.get('error', '(sha256 mismatch)')}"))
    return "\n".join(lines)
