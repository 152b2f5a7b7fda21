"""Dependencies on first use: one confirmation, installed in the background, none in testing mode.

- what is missing: ``install_plan`` (torch, the packages of ``Resources/requirements.txt``, and
  ONNX Runtime whenever torch is missing: the quick result runs on it, without adaptation);
- how it is installed: ``install_steps`` -> commands that ``installer.BackgroundInstall`` runs
  in background processes (``PythonSlicer -m pip install``; torch with light-the-torch, the
  installer the PyTorch extension's PyTorchUtils uses, which picks the CUDA build that matches
  the NVIDIA driver), always with a constraints file pinning Slicer's own numpy / SimpleITK /
  vtk. Nothing is installed on the GUI thread and no Slicer installer dialog is shown, so a
  failure reads the same on Slicer 5.6 to 5.13 (``installer.pip_failure``).
- the user is asked once for everything (``confirmation_text``); whether Slicer must restart
  (a package that was already imported was replaced) is ``restart_needed``; never in testing.
- Intel Macs: the last torch built for them (2.2) needs numpy < 2; Slicer 5.10+ ships numpy 2,
  so installing torch there is refused with a clear message (``torch_blocker``); the quick
  result (ONNX Runtime) still works there.
- what the engine can use (torch / onnxruntime versions, CUDA, GPU name and memory) is asked
  from the engine itself, ``intersr info --json``, in a background process (``info_args``),
  so the module never imports torch itself (nor does the background install).

Qt-free: the module passes its dialogs and timer.
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
from .i18n import _

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
        return _("checking PyTorch...")
    torch = info.get("torch") or {}
    if not torch.get("installed"):
        return _("PyTorch is not installed: the quick result (ONNX Runtime, no adaptation) is offered")
    if torch.get("error"):
        return _("PyTorch is installed but failed: {error}").format(error=torch["error"])
    text = _("PyTorch {version}").format(version=torch.get("version", "?"))
    if torch.get("cuda"):
        gpus = info.get("gpus") or [{}]
        gpu = gpus[0].get("name") or "GPU"
        memory = f", {gpus[0]['memory_gib']} GiB" if gpus[0].get("memory_gib") else ""
        cuda = f"CUDA {torch['cuda_version']}" if torch.get("cuda_version") else "CUDA"
        text += ", " + _("{cuda} available: {gpu}").format(cuda=cuda, gpu=gpu) + memory
    else:
        text += ", " + _("CUDA not available: runs on the CPU (slower; use the 'fast' budget)")
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


ONNX_REQUIREMENT = "onnxruntime>=1.16"  # the quick mode's runtime when torch is absent


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def install_plan(quick: bool = False) -> dict:
    """What is missing: {"torch": bool, "packages": [...], "blocker": message or None}.
    ``quick`` (no fine-tuning) needs no torch: ONNX Runtime runs the shipped network. Whenever
    torch is missing, ONNX Runtime is planned first, so the quick result can run while torch
    is still being installed."""
    has_torch = torch_installed()
    need_torch = not quick and not has_torch
    packages = missing_requirements()
    if not has_torch and not onnxruntime_installed():
        packages.append(ONNX_REQUIREMENT)
    blocker = torch_blocker() if need_torch else None
    if blocker:
        blocker += " Or tick 'Quick: no fine-tuning', which runs without PyTorch."
    return {"torch": need_torch, "packages": packages, "blocker": blocker}


def plan_is_empty(plan: dict) -> bool:
    return not (plan["torch"] or plan["packages"])


def confirmation_text(plan: dict) -> str:
    """The one question asked before anything is installed."""
    wanted = list(plan["packages"]) + ([_("torch (the build that matches your GPU driver)")] if plan["torch"] else [])
    return (_("InterSliceSR needs these Python packages, which are not installed yet:") + "\n\n"
            + "\n".join(f"- {w}" for w in wanted) + "\n\n"
            + _("Download and install them into Slicer's Python now? It runs in the background "
                "(PyTorch can take minutes; 'Cancel install' in the module panel stops it), and the "
                "quick result is available as soon as ONNX Runtime is in."))


def install_steps(plan: dict, constraints: str, python: str | None = None) -> list:
    """Background commands for ``plan`` (raises RuntimeError with the blocker's message):
    the packages first (ONNX Runtime among them: seconds), then PyTorch (minutes)."""
    from .installer import pip_step, torch_steps

    if plan.get("blocker"):
        raise RuntimeError(plan["blocker"])
    python = python or python_executable()
    steps = [pip_step(python, list(plan["packages"]), constraints)] if plan["packages"] else []
    return steps + (torch_steps(python, constraints) if plan["torch"] else [])


def imported_packages() -> set:
    """Import names of planned packages that are loaded now (call before installing)."""
    return {name for name in _IMPORT_NAMES.values() if name in sys.modules}


def restart_needed(installed_requirements: list, imported_before: set) -> bool:
    """A package that was already imported in Slicer was replaced: Slicer must restart."""
    changed = {_IMPORT_NAMES.get(_split_requirement(r)[0].lower(), "") for r in installed_requirements}
    return bool(changed & imported_before)


def start_install(plan: dict, confirm, *, testing: bool = False, schedule=None, on_line=None,
                  on_step_done=None, on_finished=None, python: str | None = None, launcher=None):
    """Ask ONCE, then install ``plan`` in the background; returns the running
    ``installer.BackgroundInstall``, or None when nothing was started (nothing missing,
    declined, or testing mode: a test must not change Slicer's Python). Raises RuntimeError
    with the blocker's message before asking anything. ``restart_needed`` is set on the
    install (True when a package Slicer had already imported was replaced)."""
    from .installer import BackgroundInstall

    if plan_is_empty(plan):
        return None
    if plan.get("blocker"):
        raise RuntimeError(plan["blocker"])
    if testing or not confirm(confirmation_text(plan), _("InterSliceSR - install dependencies")):
        return None
    constraints = write_constraints()
    extra = {} if launcher is None else {"launcher": launcher}
    install = BackgroundInstall(install_steps(plan, constraints, python), on_line=on_line,
                                on_step_done=on_step_done, on_finished=on_finished, schedule=schedule, **extra)
    install.temp_files.append(constraints)
    install.restart_needed = restart_needed(list(plan["packages"]), imported_packages())
    return install.start()
