"""Install Python packages in a background process: the GUI never waits for pip.

Each step is one command (``PythonSlicer -m pip install ...``, or light-the-torch's installer
for PyTorch) run by ``EngineProcess`` (its own process group, a reader thread, a stop that
returns at once). The owner calls ``poll()`` from a timer of its event loop: output lines go
to ``on_line`` (the module's log), and the next step starts when one succeeds.

A failing step ends the install with ONE message that names the package and pip's reason,
read from pip's own output (the last ``ERROR:`` lines), the same on every Slicer version: no
Slicer installer dialog is involved. ``cancel()`` stops the running step's whole tree.

Slicer's own numpy, SimpleITK and vtk are pinned by a constraints file on every step, so pip
can never replace them. Qt-free: tested with fake installs (Testing/test_slicer_installer.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .engine_process import EngineProcess
from .i18n import _

PIP_QUIET = ["--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
# light-the-torch picks the PyTorch build that matches the NVIDIA driver (what the PyTorch
# extension's PyTorchUtils uses too); it wraps pip, so pip's options and output are the same.
LTT_REQUIREMENT = "light-the-torch>=0.5"
TORCH_REQUIREMENT = "torch>=2.0"


@dataclass
class InstallStep:
    package: str  # what the user is told about ("onnxruntime", "torch")
    args: list = field(default_factory=list)


def pip_step(python: str, requirements: list, constraints: str) -> InstallStep:
    names = ", ".join(requirement_name(r) for r in requirements)
    return InstallStep(names, [python, "-m", "pip", "install", *PIP_QUIET, "-c", constraints, *requirements])


def torch_steps(python: str, constraints: str) -> list:
    return [pip_step(python, [LTT_REQUIREMENT], constraints),
            InstallStep("torch", [python, "-m", "light_the_torch", "install", *PIP_QUIET, "-c", constraints,
                                  TORCH_REQUIREMENT])]


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0]


# ------------------------------------------------------------------------------ pip's reason
_NOT_FOUND = re.compile(r"No matching distribution found for\s+(\S+)", re.IGNORECASE)
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement\s+(\S+)", re.IGNORECASE)
_CONFLICT = re.compile(r"Cannot install\s+(.+?)\s+because", re.IGNORECASE)
_BUILD = re.compile(r"Failed (?:to )?build(?:ing wheel for)?\s+(\S+)", re.IGNORECASE)
_NETWORK = ("Failed to establish a new connection", "Temporary failure in name resolution",
            "Name or service not known", "Connection refused", "Network is unreachable",
            "Read timed out", "ConnectTimeoutError", "SSLError", "ProxyError",
            "getaddrinfo failed", "nodename nor servname")


def pip_failure(lines: list, package: str, returncode=None) -> tuple:
    """(package, reason) from a failed pip's output: the package pip names (else the step's),
    and its reason in one sentence."""
    text = "\n".join(lines)
    for pattern in (_NOT_FOUND, _NO_VERSION, _CONFLICT, _BUILD):
        match = pattern.search(text)
        if match:
            package = match.group(1).strip().rstrip(".;,")
            break
    if any(marker in text for marker in _NETWORK):
        return package, _("no connection to the package index (check the network or proxy settings)")
    if "No space left on device" in text or "[Errno 28]" in text:
        return package, _("the disk is full")
    if "Permission denied" in text or "[Errno 13]" in text:
        return package, _("no permission to write into Slicer's Python (install Slicer where you can write)")
    errors = [line.strip()[len("ERROR:"):].strip() for line in lines if line.strip().startswith("ERROR:")]
    errors = [e for e in errors if e and not e.startswith("To fix this") and not e.startswith("ResolutionImpossible")]
    if errors:
        specific = [e for e in errors if "No matching distribution" in e or "conflicting" in e
                    or "Could not install" in e or "Failed" in e]
        return package, (specific or errors)[-1]
    meaningful = [line.strip() for line in lines if line.strip()]
    if meaningful:
        return package, meaningful[-1]
    return package, _("the installer ended with exit code {code}").format(code=returncode)


def failure_message(package: str, reason: str) -> str:
    return _("Could not install {package}: {reason}").format(package=package, reason=reason)


class BackgroundInstall:
    """Run ``steps`` one after the other in background processes.

    ``state``: "idle", "running", "succeeded", "failed" or "cancelled". ``poll()`` drains the
    output into ``on_line`` and advances; it never blocks. With ``schedule(ms, callback)`` (the
    module passes ``qt.QTimer.singleShot``) the install polls itself from the owner's event
    loop until it ends, then calls ``on_finished(self)``. ``on_step_done(step)`` runs when a
    step succeeded (the module refreshes the panel: the quick result is offered as soon as ONNX
    Runtime is in, while PyTorch still installs). ``temp_files`` are removed at the end.
    """

    TAIL = 200  # lines of output kept for the failure message

    def __init__(self, steps: list, *, on_line=None, on_step_done=None, on_finished=None, schedule=None,
                 launcher=EngineProcess, poll_ms: int = 200):
        self.steps = list(steps)
        self.on_line = on_line or (lambda line: None)
        self.on_step_done = on_step_done or (lambda step: None)
        self.on_finished = on_finished or (lambda install: None)
        self.schedule = schedule
        self.launcher = launcher
        self.poll_ms = poll_ms
        self.state = "idle"
        self.index = 0
        self.lines: list = []
        self.message = ""
        self.failed_package = None
        self.installed: list = []
        self.temp_files: list = []
        self._process = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def step(self):
        return self.steps[self.index] if self.index < len(self.steps) else None

    def start(self) -> "BackgroundInstall":
        self.state = "running"
        if self.steps:
            self._start_step()
        else:
            self._end("succeeded")
        if self.schedule is not None and self.running:
            self.schedule(self.poll_ms, self._tick)
        return self

    def _tick(self) -> None:
        if self.poll() == "running" and self.schedule is not None:
            self.schedule(self.poll_ms, self._tick)

    def _start_step(self) -> None:
        step = self.steps[self.index]
        self.lines = []
        self.on_line(_("Installing {package} ({n} of {total})...").format(
            package=step.package, n=self.index + 1, total=len(self.steps)))
        try:
            self._process = self.launcher(step.args)
        except OSError as exc:
            self._fail(step.package, str(exc))

    def _fail(self, package: str, reason: str) -> None:
        self.failed_package = package
        self.message = failure_message(package, reason)
        self.on_line(self.message)
        self._end("failed")

    def _end(self, state: str) -> None:
        import os

        self.state = state
        for path in self.temp_files:
            try:
                os.remove(path)
            except OSError:
                pass
        self.on_finished(self)

    def poll(self) -> str:
        if self.state != "running" or self._process is None:
            return self.state
        for event in self._process.events():
            line = str(event.get("message", "")) if event.get("stage") == "log" else str(event)
            self.lines = (self.lines + [line])[-self.TAIL:]
            if line.strip():
                self.on_line(line)
        if not self._process.finished:
            return self.state
        step, process, self._process = self.step, self._process, None
        if process.stopping:
            self.on_line(_("Installation cancelled ({package} was not installed).").format(package=step.package))
            self._end("cancelled")
        elif process.returncode != 0:
            self._fail(*pip_failure(self.lines, step.package, process.returncode))
        else:
            self.installed.append(step.package)
            self.on_step_done(step)
            self.index += 1
            if self.index < len(self.steps):
                self._start_step()
            else:
                self.on_line(_("Dependencies installed."))
                self._end("succeeded")
        return self.state

    def cancel(self) -> None:
        """Stop the running step's process tree; returns at once (``poll`` finishes it)."""
        if self.state == "running" and self._process is not None:
            self._process.request_stop()
