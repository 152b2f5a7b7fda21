"""Dependencies on first use, without importing torch into Slicer at module load.

- torch: through the PyTorch extension's ``PyTorchUtils`` (it picks the CUDA build that matches
  the NVIDIA driver with light-the-torch). The extension is declared in EXTENSION_DEPENDS.
- everything else: ``Resources/requirements.txt`` through ``slicer.packaging.pip_ensure``
  (Slicer >= 5.12) or ``slicer.util.pip_install`` (Slicer 5.6 - 5.10), always with a
  constraints file that pins Slicer's own numpy / SimpleITK / vtk to the installed versions,
  so they are never reinstalled or upgraded.
- what the engine can use (torch / onnxruntime versions, CUDA, GPU name and memory) is asked
  from the engine itself, ``intersr info --json``, in a background process (``info_args``),
  so the module never imports torch itself.

Qt-free: dialogs come from slicer.util / slicer.packaging, which own their Qt imports.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import tempfile

from .engine_process import python_executable

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS_FILE = os.path.join(MODULE_DIR, "Resources", "requirements.txt")
# Packages Slicer ships and that must never be reinstalled by this extension.
SLICER_BUNDLED = ("numpy", "SimpleITK", "vtk")
# Distribution name -> import name, for the "restart needed" check.
_IMPORT_NAMES = {"scipy": "scipy", "psutil": "psutil"}

def torch_installed() -> bool:
    """True when torch can be imported (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def info_args(python: str | None = None) -> list:
    """Command that prints the engine's ``intersr info --json`` (one JSON line)."""
    return [python or python_executable(), "-m", "intersr", "info", "--json"]


def info_from_event(event: dict) -> dict | None:
    """The info dict when an engine output line is ``intersr info --json``'s answer."""
    if event.get("stage") != "log":
        return None
    try:
        info = json.loads(str(event.get("message", "")))
    except ValueError:
        return None
    return info if isinstance(info, dict) and "intersr" in info else None


def format_torch_info(info: dict | None) -> str:
    """One line for the GUI from ``intersr info --json`` (None: still asking)."""
    if not info:
        return "checking PyTorch..."
    torch = info.get("torch") or {}
    if not torch.get("installed"):
        return "PyTorch is not installed"
    if torch.get("error"):
        return f"PyTorch is installed but failed: {torch['error']}"
    text = f"PyTorch {torch.get('version', '?')}"
    if torch.get("cuda"):
        gpus = info.get("gpus") or [{}]
        gpu = gpus[0].get("name") or "GPU"
        memory = f", {gpus[0]['memory_gib']} GiB" if gpus[0].get("memory_gib") else ""
        cuda = f"CUDA {torch['cuda_version']}" if torch.get("cuda_version") else "CUDA"
        text += f", {cuda} available: {gpu}{memory}"
    else:
        text += ", CUDA not available: runs on the CPU (slower; use the 'fast' budget)"
    return text


# ------------------------------------------------------------------------------ requirements
def read_requirements(path: str = REQUIREMENTS_FILE) -> list:
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    return lines


def _split_requirement(requirement: str):
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$", requirement)
    if not match:
        raise ValueError(f"cannot parse requirement {requirement!r}")
    return match.group(1), match.group(2).split(";", 1)[0].strip()


def requirement_satisfied(requirement: str) -> bool:
    name, specifier = _split_requirement(requirement)
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # no 'packaging': presence is all we can check
        return True
    return SpecifierSet(specifier).contains(installed, prereleases=True)


def missing_requirements(path: str = REQUIREMENTS_FILE) -> list:
    return [req for req in read_requirements(path) if not requirement_satisfied(req)]


def write_constraints(directory: str | None = None) -> str:
    """A pip constraints file pinning Slicer's bundled packages to what is installed now."""
    pins = []
    for name in SLICER_BUNDLED:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue  # e.g. Slicer's VTK is not a pip distribution: pip cannot replace it either
    fd, path = tempfile.mkstemp(prefix="InterSliceSR-constraints-", suffix=".txt", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(pins) + "\n")
    return path


def install_python_requirements(path: str = REQUIREMENTS_FILE, requester: str = "InterSliceSR") -> dict:
    """Install what ``requirements.txt`` lists and is missing. Returns
    {"installed": [...], "restart_needed": bool}."""
    missing = missing_requirements(path)
    if not missing:
        return {"installed": [], "restart_needed": False}
    import slicer

    already_imported = [r for r in missing if _IMPORT_NAMES.get(_split_requirement(r)[0].lower(), "") in sys.modules]
    constraints = write_constraints()
    try:
        try:
            import slicer.packaging as packaging  # Slicer >= 5.12
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            # pip_ensure asks for confirmation and offers a restart itself when needed
            packaging.pip_ensure(missing, constraints=constraints, requester=requester)
        else:
            if not slicer.util.confirmOkCancelDisplay(
                    "InterSliceSR needs these Python packages:\n\n" + "\n".join(missing)
                    + "\n\nInstall them into Slicer's Python now?", "InterSliceSR - install packages"):
                raise RuntimeError("Installation of Python packages declined")
            slicer.util.pip_install([*missing, "-c", constraints])
    finally:
        os.remove(constraints)
    return {"installed": missing, "restart_needed": bool(already_imported)}


# ------------------------------------------------------------------------------ torch
def pytorch_utils_logic():
    """The PyTorch extension's logic, or None when the extension is not installed."""
    try:
        import PyTorchUtils  # on sys.path when the PyTorch extension is installed

        return PyTorchUtils.PyTorchUtilsLogic()
    except ImportError:
        pass
    import slicer

    try:  # same logic, through the module manager (creates the module's widget if needed)
        return slicer.util.getModuleLogic("PyTorchUtils")
    except Exception:
        return None


def install_torch(ask_confirmation: bool = True) -> dict:
    """Install torch with PyTorchUtils. Returns {"installed": bool, "restart_needed": bool}."""
    logic = pytorch_utils_logic()
    if logic is None:
        raise RuntimeError("The 'PyTorch' extension is missing: install it from the Extensions Manager "
                           "(it installs the PyTorch build that matches your GPU driver), restart Slicer "
                           "and try again.")
    was_imported = "torch" in sys.modules
    torch = logic.installTorch(askConfirmation=ask_confirmation, torchVersionRequirement=">=2.0")
    if torch is None:
        return {"installed": False, "restart_needed": False}
    return {"installed": True, "restart_needed": was_imported}


def ensure_dependencies(ask_confirmation: bool = True) -> dict:
    """torch (PyTorchUtils) then requirements.txt. Returns what happened, including whether
    Slicer must be restarted before the module can run."""
    result = {"torch_installed_now": False, "packages_installed_now": [], "restart_needed": False}
    if not torch_installed():
        torch = install_torch(ask_confirmation)
        if not torch["installed"]:
            raise RuntimeError("PyTorch was not installed")
        result["torch_installed_now"] = True
        result["restart_needed"] |= torch["restart_needed"]
    packages = install_python_requirements()
    result["packages_installed_now"] = packages["installed"]
    result["restart_needed"] |= packages["restart_needed"]
    return result
