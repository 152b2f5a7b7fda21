"""Dependencies on first use: one confirmation, one restart question, none in testing mode.

- torch: through the PyTorch extension's ``PyTorchUtils`` (it picks the CUDA build that matches
  the NVIDIA driver with light-the-torch). The extension is declared in EXTENSION_DEPENDS.
  ``installTorch`` ends with ``import torch``: after an install, torch IS loaded in Slicer's
  process (the module itself never imports it; the engine runs in its own process).
- everything else: ``Resources/requirements.txt`` through ``slicer.packaging.pip_ensure``
  (Slicer >= 5.12, its own prompts turned off) or ``slicer.util.pip_install`` (5.6 - 5.10),
  always with a constraints file pinning Slicer's own numpy / SimpleITK / vtk.
- the user is asked once for everything (``ensure_dependencies``); whether Slicer must restart
  is returned, and the caller asks that once, never in testing mode.
- Intel Macs: the last torch built for them (2.2) needs numpy < 2; Slicer 5.10+ ships numpy 2,
  so installing torch there is refused with a clear message (``torch_blocker``).
- what the engine can use (torch / onnxruntime versions, CUDA, GPU name and memory) is asked
  from the engine itself, ``intersr info --json``, in a background process (``info_args``),
  so the module never imports torch itself.

Qt-free: dialogs are passed in (the module passes slicer.util's).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
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


def install_python_requirements(requirements: list, requester: str = "InterSliceSR") -> None:
    """pip-install ``requirements`` (already confirmed by the user: no prompt of its own)."""
    import slicer

    constraints = write_constraints()
    try:
        try:
            import slicer.packaging as packaging  # Slicer >= 5.12
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            packaging.pip_ensure(requirements, constraints=constraints, requester=requester,
                                 prompt_install=False, prompt_restart=False)
        else:
            slicer.util.pip_install([*requirements, "-c", constraints])
    finally:
        os.remove(constraints)


# ------------------------------------------------------------------------------ torch
LAST_INTEL_MAC_TORCH = "2.2"


def torch_blocker(system: str | None = None, machine: str | None = None, numpy_version: str | None = None):
    """Why torch cannot be installed here (a message), or None. Intel Macs: PyTorch stopped at
    2.2 for macOS x86_64, and torch 2.2 is built against numpy 1.x; Slicer 5.10 and later
    ship numpy 2, which Slicer's own modules need, so it must not be downgraded."""
    system = system or sys.platform
    machine = machine or platform.machine()
    if numpy_version is None:
        try:
            numpy_version = importlib.metadata.version("numpy")
        except importlib.metadata.PackageNotFoundError:
            numpy_version = "0"
    if system == "darwin" and machine == "x86_64" and int(numpy_version.split(".")[0]) >= 2:
        return (f"PyTorch cannot be installed into this Slicer: the last PyTorch for Intel Macs "
                f"({LAST_INTEL_MAC_TORCH}) needs numpy < 2, and this Slicer ships numpy {numpy_version}, "
                f"which Slicer itself needs. Use Slicer 5.8 or older on this Mac, or a Mac with Apple "
                f"silicon, Linux or Windows.")
    return None


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


def install_torch(logic=None) -> None:
    """Install torch with PyTorchUtils (already confirmed: no prompt of its own). Note that
    ``installTorch`` imports torch into this process when it is done."""
    logic = logic or pytorch_utils_logic()
    if logic is None:
        raise RuntimeError("The 'PyTorch' extension is missing: install it from the Extensions Manager "
                           "(it installs the PyTorch build that matches your GPU driver), restart Slicer "
                           "and try again.")
    torch = logic.installTorch(askConfirmation=False, torchVersionRequirement=">=2.0")
    if torch is None:
        raise RuntimeError("PyTorch was not installed (see the log for PyTorchUtils' message)")


ONNX_REQUIREMENT = "onnxruntime>=1.16"  # the quick mode's runtime when torch is absent


def install_plan(quick: bool = False) -> dict:
    """What is missing: {"torch": bool, "packages": [...], "blocker": message or None}.
    ``quick`` (no fine-tuning) needs no torch: ONNX Runtime runs the shipped network."""
    has_torch = torch_installed()
    need_torch = not quick and not has_torch
    packages = missing_requirements()
    if quick and not has_torch and importlib.util.find_spec("onnxruntime") is None:
        packages.append(ONNX_REQUIREMENT)
    blocker = torch_blocker() if need_torch else None
    if blocker:
        blocker += " Or tick 'Quick: no fine-tuning', which runs without PyTorch."
    return {"torch": need_torch, "packages": packages, "blocker": blocker}


def ensure_dependencies(confirm, testing: bool = False, plan: dict | None = None, *,
                        torch_installer=install_torch, package_installer=install_python_requirements) -> dict:
    """Install what is missing after ONE confirmation. Returns {"installed": [...],
    "declined": bool, "skipped_in_testing": bool, "restart_needed": bool}.

    ``confirm(message, title) -> bool`` is the only dialog shown here (the module passes
    ``slicer.util.confirmOkCancelDisplay``). In testing mode nothing is installed (a test must
    not change Slicer's Python). Raises RuntimeError with a clear message when it cannot be done.
    """
    plan = install_plan() if plan is None else plan
    result = {"installed": [], "declined": False, "skipped_in_testing": False, "restart_needed": False}
    wanted = (["torch (through the PyTorch extension)"] if plan["torch"] else []) + list(plan["packages"])
    if not wanted:
        return result
    if plan.get("blocker"):
        raise RuntimeError(plan["blocker"])
    if testing:
        result["skipped_in_testing"] = True
        return result
    if not confirm("InterSliceSR needs these Python packages, which are not installed yet:\n\n"
                   + "\n".join(f"- {w}" for w in wanted)
                   + "\n\nDownload and install them into Slicer's Python now (this can take minutes)?",
                   "InterSliceSR - install dependencies"):
        result["declined"] = True
        return result
    imported_before = {name for name in _IMPORT_NAMES.values() if name in sys.modules}
    if plan["torch"]:
        torch_installer()
        result["installed"].append("torch")
    if plan["packages"]:
        package_installer(list(plan["packages"]))
        result["installed"] += list(plan["packages"])
        changed = {_IMPORT_NAMES.get(_split_requirement(r)[0].lower(), "") for r in plan["packages"]}
        result["restart_needed"] = bool(changed & imported_before)
    return result
