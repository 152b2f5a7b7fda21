"""Qt-free logic: MRML volume node -> temporary NRRD -> engine process -> new volume node.

Guarantees (tested in Testing/test_slicer_logic.py against a real MRML scene):
- the input node is only read (through a storage node that is never added to the scene);
- the result is read into a NEW vtkMRMLScalarVolumeNode that is added to the scene only once
  it was read completely; a failed or cancelled run adds nothing;
- the run's temporary folder is removed in every case (success, failure, cancel);
- one run at a time per Slicer process: a second ``start`` while one runs is refused;
- faults around the run say what happened: the input node removed (or the scene closed) during
  a run stops the engine at once and adds nothing; an engine killed by a signal is reported as
  "killed (out of memory?)"; a full disk is named as such (docs/faults.md).

MRML is touched only from the thread that calls ``start``/``poll``/``wait``/``cancel`` (the
GUI calls ``poll`` from a QTimer in the main thread).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, field, make_dataclass, replace

from intersr import options
from intersr import protocol
from intersr.volumes.filecheck import disk_full_reason

from .dicom import RESULT_NAME_SUFFIX, dicomFacts, exportAttributes, markForExport, resultName
from . import confidence
from .engine_process import EngineProcess, build_engine_args, build_fuse_args
from .nodes import addVolumeNode
from .progress import ProgressState

RESULT_SUFFIX = RESULT_NAME_SUFFIX  # "<input> (InterSliceSR synthesised)", made unique


class RunError(RuntimeError):
    """The engine failed; the message is the engine's own (or what went wrong around it)."""


def _from_parameter_node(cls, parameterNode):
    """The parameter node's values for every field it has (names from the declaration)."""
    return cls(**{f: getattr(parameterNode, f) for f in cls.__dataclass_fields__
                  if hasattr(parameterNode, f)})


def _to_options(self):
    """The engine's RunOptions (validated; raises intersr.errors.InputError)."""
    return options.from_parameters(asdict(self))


def _engine_args(self, inputPath, outputPath, python=None) -> list:
    return build_engine_args(inputPath, outputPath, self.toOptions(), python=python)


# What one run needs, on the Slicer side: one camelCase field per engine option of
# ``intersr.options`` (``targetSpacing``/``sliceThickness`` 0 = automatic), plus the GUI's
# ``budgetSeconds`` for the "seconds" budget. Derived, never declared twice.
RunParameters = make_dataclass(
    "RunParameters",
    [(options.param_name(o), o.annotation, field(default=o.default)) for o in options.ENGINE_OPTIONS]
    + [(options.BUDGET_SECONDS_PARAM, float, field(default=120.0)),
       (confidence.PARAMETER, bool, field(default=False))],  # the --confidence checkbox
    namespace={"fromParameterNode": classmethod(_from_parameter_node), "toOptions": _to_options,
               "engineArgs": _engine_args, "__module__": __name__,
               "__doc__": "Run parameters, Slicer side (derived from intersr.options)."})


class InterSliceSRLogicCore:
    """Start, watch, cancel and finish one engine run at a time.

    ``state`` is one of "idle", "running", "succeeded", "failed", "cancelled".
    ``on_event(event)`` (optional) receives every engine event (dicts, see progress.py) plus
    synthetic ones: {"stage": "start"}, {"stage": "result", "node": ...}, {"stage":
    "failed", "message": ...}, {"stage": "cancelled"}.
    """

    _activeLock = threading.Lock()
    _activeRun = None  # the InterSliceSRLogicCore that is running, process-wide

    def __init__(self, tempRoot: str | None = None, python: str | None = None):
        self.tempRoot = tempRoot
        self.python = python
        self.state = "idle"
        self.progress = ProgressState()
        self.outputNode = None
        self.confidenceNode = None  # "<result> confidence" when the run made a confidence map
        self.errorMessage = ""
        self.doneEvent = None
        self._process = None
        self._tempDir = None
        self._inputNode = None
        self._scene = None
        self._params = None
        self._onEvent = None
        self._startTime = None
        self._cancelRequested = False
        self._abandonMessage = None
        self._dicomFacts = None
        self._extraStacks = []
        # The DICOM database that maps a node's "DICOM.instanceUIDs" to files (None: Slicer's
        # own, slicer.dicomDatabase, when there is one).
        self.dicomDatabase = None
        # schedule(milliseconds, callback): a one-shot timer of the caller's event loop (Slicer
        # passes qt.QTimer.singleShot). When set, every run finishes on its own (console
        # ``process(wait=False)``, with or without ``on_event``); None = the owner polls.
        self.schedule = None
        self.pollIntervalMs = 100

    # ------------------------------------------------------------------ state
    @property
    def isRunning(self) -> bool:
        return self.state == "running"

    @property
    def isCancelling(self) -> bool:
        """A cancel was requested and the process tree is not gone yet."""
        return self.state == "running" and self._cancelRequested

    @classmethod
    def anyRunning(cls) -> bool:
        return cls._activeRun is not None

    @classmethod
    def cancelActive(cls, wait: bool = False, timeout: float = 10.0) -> bool:
        """Cancel whatever run this process has going, whoever started it (the GUI or the
        Python console): module cleanup and scene close call this."""
        run = cls._activeRun
        return run.cancel(wait=wait, timeout=timeout) if run is not None else False

    @property
    def tempDir(self):
        return self._tempDir

    @property
    def enginePid(self):
        return self._process.pid if self._process is not None else None

    # ------------------------------------------------------------------ start
    def start(self, inputNode, params: RunParameters | None = None, on_event=None,
              extraStacks=()) -> None:
        """Write the input to a temporary NRRD and launch the engine; returns at once.

        ``extraStacks``: more thick series of the same exam; the engine then fuses them with
        the input (``intersr fuse``, the input is the reference) into one volume."""
        extraStacks = list(extraStacks or ())
        for node in [inputNode, *extraStacks]:
            checkInputNode(node)
        if any(node is inputNode for node in extraStacks) or \
                len({id(node) for node in extraStacks}) != len(extraStacks):
            raise ValueError("each stack can be given once")
        if any(node.GetScene() is not inputNode.GetScene() for node in extraStacks):
            raise ValueError("all stacks must be in the same scene")
        params = params or RunParameters()
        with InterSliceSRLogicCore._activeLock:
            if InterSliceSRLogicCore._activeRun is not None:
                raise RuntimeError("InterSliceSR is already running; wait for it to finish or cancel it first")
            InterSliceSRLogicCore._activeRun = self
        try:
            self.state = "running"
            self.progress = ProgressState()
            self.outputNode = None
            self.confidenceNode = None
            self.errorMessage = ""
            self.doneEvent = None
            self._inputNode = inputNode
            self._extraStacks = extraStacks
            self._scene = inputNode.GetScene()
            self._params = params
            self._onEvent = on_event
            self._startTime = time.monotonic()
            self._cancelRequested = False
            self._abandonMessage = None
            params = self._withDicomFacts(inputNode, params)
            # The engine follows this process (gone within 5 s if Slicer dies), runs at lower
            # priority on all cores but one, and writes its result uncompressed (read faster).
            params = replace(params, parentPid=params.parentPid or os.getpid(), uncompressed=True)
            parent = self._tempParent()
            try:
                self._tempDir = tempfile.mkdtemp(prefix="InterSliceSR-", dir=parent)
            except OSError as exc:
                raise RunError(f"cannot create a temporary folder in {parent or tempfile.gettempdir()}: "
                               f"{exc.strerror}") from None
            inputPath = os.path.join(self._tempDir, "input.nrrd")
            outputPath = os.path.join(self._tempDir, "output.nrrd")
            writeVolumeToFile(inputNode, inputPath)
            if extraStacks:
                args = self._fuseArgs(params, inputPath, outputPath)
            else:
                args = params.engineArgs(inputPath, outputPath, python=self.python)
                args += confidence.engine_flags(params, self._tempDir)
            self._emit({"stage": "start", "message": "Running: " + " ".join(args[1:])})
            self._process = EngineProcess(args, cwd=self._tempDir)
        except BaseException:
            self._cleanup()
            self.state = "failed"
            self._release()
            raise
        if self.schedule is not None:
            self.schedule(self.pollIntervalMs, self._tick)

    def _withDicomFacts(self, inputNode, params):
        """A node loaded from DICOM: its SliceThickness goes to the engine as --thickness
        (unless one was set), and the log says what the header said."""
        self._dicomFacts = facts = dicomFacts(inputNode, self.dicomDatabase)
        if facts is None:
            return params
        message = facts.describe()
        if params.sliceThickness:
            message += f"; the slice thickness set ({params.sliceThickness:g} mm) is used"
        elif facts.slice_thickness:
            params = replace(params, sliceThickness=facts.slice_thickness)
            message += f"; passed to the engine as --thickness {facts.slice_thickness:g}"
        self._emit({"stage": "log", "message": message})
        return params

    def _fuseArgs(self, params, inputPath, outputPath) -> list:
        """Every extra stack to its own NRRD; each stack's DICOM SliceThickness (if any)."""
        paths, thicknesses = [inputPath], [params.sliceThickness or None]
        for k, node in enumerate(self._extraStacks, start=1):
            path = os.path.join(self._tempDir, f"stack{k}.nrrd")
            writeVolumeToFile(node, path)
            paths.append(path)
            facts = dicomFacts(node, self.dicomDatabase)
            thicknesses.append(facts.slice_thickness if facts else None)
        self._emit({"stage": "log", "message": f"Fusing {len(paths)} stacks; the reference "
                    f"(output frame) is '{self._inputNode.GetName()}'"})
        return build_fuse_args(paths, outputPath, params.toOptions(), python=self.python,
                               thicknesses=thicknesses)

    def _tick(self) -> None:
        """Timer callback: poll, and come back while the run goes on."""
        if self.poll() == "running" and self.schedule is not None:
            self.schedule(self.pollIntervalMs, self._tick)

    def _tempParent(self):
        if self.tempRoot:
            os.makedirs(self.tempRoot, exist_ok=True)
            return self.tempRoot
        try:
            import slicer

            app = getattr(slicer, "app", None)
            if app is not None and app.temporaryPath:
                return app.temporaryPath
        except Exception:
            pass
        return None

    # ------------------------------------------------------------------ watch
    def poll(self) -> str:
        """Dispatch new events; finish the run when the engine has exited. Returns ``state``."""
        if self.state != "running" or self._process is None:
            return self.state
        if self._cancelRequested:
            if self._process.finished:
                self._finishCancel()
            return self.state
        if not self._inputPresent():
            self._abandon(f"the input volume '{self._inputName()}' was removed from the scene "
                          "(or the scene was closed) during the run; the engine was stopped "
                          "and nothing was added")
            return self.state
        for event in self._process.events():
            self._handleEvent(event)
        if self._process.finished:
            for event in self._process.events():  # anything read after the last drain
                self._handleEvent(event)
            self._finish()
        return self.state

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> str:
        """Block (polling) until the run ends or ``timeout`` seconds pass. Returns ``state``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() == "running":
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(interval)
        return self.state

    def cancel(self, wait: bool = True, timeout: float = 10.0) -> bool:
        """Stop the engine's whole process tree; add nothing; remove the temporary files once
        the tree is gone (never under a live engine). True if it cancelled a running job.

        ``wait=False`` (the GUI thread): signal the tree and return at once; the next ``poll``
        after the tree is gone completes the cancel (state "cancelled", event "cancelled").
        ``wait=True`` (console): return when that has happened (or ``timeout`` passed).
        """
        if self.state != "running":
            return False
        if not self._cancelRequested:
            self._cancelRequested = True
            self.errorMessage = "Cancelled by the user"
            if self._process is not None:
                self._process.request_stop()
        if wait and self._process is not None:
            self._process.wait_finished(timeout)
        if self._process is None or self._process.finished:
            self._finishCancel()
        return True

    def _finishCancel(self) -> None:
        for event in self._process.events() if self._process is not None else []:
            if event.get("stage") == "log":
                self.progress.update(event)
        self._cleanup()
        if self._abandonMessage:  # stopped because the result had nowhere to go
            self.state = "failed"
            self.errorMessage = self._abandonMessage
            self._release()
            self._emit({"stage": "failed", "message": self._abandonMessage})
            return
        self.state = "cancelled"
        self._release()
        self._emit({"stage": "cancelled", "message": "Cancelled: nothing was added to the scene"})

    def _inputPresent(self) -> bool:
        scene = self._scene
        return scene is not None and all(
            node is not None and node.GetScene() is scene and bool(scene.IsNodePresent(node))
            for node in [self._inputNode, *self._extraStacks])

    def _inputName(self) -> str:
        try:
            return self._inputNode.GetName()
        except Exception:
            return "?"

    def _abandon(self, message: str) -> None:
        """Stop the engine because its result has nowhere to go; the run then fails cleanly
        (state "failed" once the process tree is gone, like a cancel)."""
        self._abandonMessage = message
        self._cancelRequested = True
        if self._process is not None:
            self._process.request_stop()
        if self._process is None or self._process.finished:
            self._finishCancel()

    # ------------------------------------------------------------------ console API
    def process(self, inputNode, spacing=None, thickness=None, device="auto", adaptSeconds=None,
                       adaptSteps=None, seed=0, wait=True, *, factor=None, budget="balanced",
                       force=False, on_event=None, timeout=None, method="self-supervised",
                       confidenceMap=False):
        """Console API: make "<input name> (InterSliceSR synthesised)" from ``inputNode`` and
        return the new node.

        - ``spacing``: output spacing (mm) along the slice axis; None = isotropic.
        - ``thickness``: slice thickness (FWHM, mm); None = DICOM SliceThickness or the spacing.
        - ``device``: "auto", "cuda" or "cpu".
        - ``adaptSeconds`` / ``adaptSteps``: fine-tuning budget (``adaptSteps=0``: no fine-tuning);
          neither = ``budget`` preset (per device: ``intersr.options.BUDGET_PRESETS``).
        - ``method``: "self-supervised" (default) or "vae-pairs" (engine ``--method``).
        - ``confidenceMap``: also add "<result> confidence" (``confidenceNode``; engine
          ``--confidence``), the expected error per voxel.
        - ``wait=False`` returns None at once; call ``poll()`` until ``state`` is no longer
          "running" (the Slicer module's logic does that with a timer), then read ``outputNode``.
        Raises ``RunError`` with the engine's message when the run fails (nothing is added).
        """
        params = RunParameters(
            targetSpacing=spacing, sliceThickness=thickness, device=device, budget=budget,
            seed=seed, adaptSteps=adaptSteps, adaptSeconds=adaptSeconds, factor=factor,
            force=force, method=method, confidenceMap=confidenceMap,
        )
        self.start(inputNode, params, on_event=on_event)
        if not wait:
            return None
        return self._waitForResult(timeout)

    def fuse(self, stackNodes, spacing=None, device="auto", adaptSeconds=None, adaptSteps=None,
             seed=0, wait=True, *, budget=None, noAdapt=True, on_event=None, timeout=None):
        """Console API: fuse several thick series of one exam (the first is the reference: the
        output takes its frame) into "<first> + N stacks (InterSliceSR synthesised)".

        The stacks are registered rigidly to the first, each is super-resolved by the shipped
        network (``noAdapt=False`` with a budget also fine-tunes it on each stack), and one
        volume consistent with every stack is solved for (``intersr fuse``, docs/README).
        Same conventions as ``process`` (``wait``, ``timeout``, ``RunError``, nothing added on
        failure or cancel); the input nodes are only read."""
        stackNodes = list(stackNodes)
        if len(stackNodes) < 2:
            raise ValueError("fusion needs two or more stacks; for one stack use process()")
        adapting = not noAdapt and (budget or adaptSeconds or adaptSteps)
        params = RunParameters(targetSpacing=spacing, device=device, seed=seed,
                               budget=budget if adapting else None,
                               adaptSteps=adaptSteps if adapting else None,
                               adaptSeconds=adaptSeconds if adapting else None,
                               noAdapt=not adapting)
        self.start(stackNodes[0], params, on_event=on_event, extraStacks=stackNodes[1:])
        if not wait:
            return None
        return self._waitForResult(timeout)

    def _waitForResult(self, timeout):
        try:
            state = self.wait(timeout=timeout)
        except BaseException:  # KeyboardInterrupt in the console: stop the engine, add nothing
            self.cancel()
            raise
        if state == "running":
            self.cancel()
            raise RunError(f"InterSliceSR did not finish within {timeout} s; cancelled")
        if state != "succeeded":
            raise RunError(self.errorMessage or f"InterSliceSR run {state}")
        return self.outputNode

    # ------------------------------------------------------------------ internals
    def _emit(self, event) -> None:
        self.progress.update(event)
        if self._onEvent is not None:
            try:
                self._onEvent(event)
            except Exception:  # a broken GUI callback must not break the run
                logging.exception("InterSliceSR: event callback failed")

    def _handleEvent(self, event) -> None:
        stage = event.get("stage")
        if stage == "done":
            self.doneEvent = event
        elif stage == "error":
            self.errorMessage = str(event.get("message") or "the engine reported an error")
        self._emit(event)

    def _finish(self) -> None:
        returncode = self._process.returncode
        outputPath = os.path.join(self._tempDir, "output.nrrd")
        try:
            if returncode != 0 or self.errorMessage:
                raise RunError(self.errorMessage or self._failureFromLog(returncode))
            if not os.path.isfile(outputPath):
                raise RunError("the engine exited without writing its output")
            node = self._loadResult(outputPath)
            self._loadConfidence(node)
        except Exception as exc:
            self.state = "failed"
            self.errorMessage = str(exc) if isinstance(exc, RunError) else f"{type(exc).__name__}: {exc}"
            self._cleanup()
            self._release()
            self._emit({"stage": "failed", "message": self.errorMessage})
            return
        self._cleanup()
        self.outputNode = node
        self.state = "succeeded"
        self._release()
        seconds = time.monotonic() - self._startTime
        self._emit({"stage": "result", "node": node,
                    "message": f"Added '{node.GetName()}' in {seconds:.1f} s"})

    def _failureFromLog(self, returncode) -> str:
        killed = killedBySignal(returncode)
        if killed:
            return killed
        lines = [line for line in self.progress.log if line.strip()]
        for line in reversed(lines):  # the engine's own "intersr: error: ..." line
            if "error:" in line:
                return line.split("error:", 1)[1].strip() or line
        tail = "\n".join(lines[-5:])
        return f"the engine exited with code {returncode}" + (f":\n{tail}" if tail else "")

    def _loadResult(self, outputPath):
        inputNode = self._inputNode
        if not self._inputPresent():
            raise RunError(f"the input volume '{self._inputName()}' was removed from the scene "
                           "(or the scene was closed) during the run; nothing was added")
        scene = self._scene
        provenance = {}
        if self.doneEvent and isinstance(self.doneEvent.get("provenance"), dict):
            provenance.update(self.doneEvent["provenance"])
        if not provenance:
            provenance.update(readNrrdProvenance(outputPath))
        provenance = {_shortKey(k): v for k, v in provenance.items()}
        if self.doneEvent and self.doneEvent.get("data_consistency_db") is not None:
            provenance.setdefault("data_consistency_db", self.doneEvent["data_consistency_db"])

        stacks = len(self._extraStacks) + 1
        facts = self._dicomFacts

        def setUp(node):
            copyDisplaySettings(inputNode, node)
            placeBeside(inputNode, node)
            markForExport(node, exportAttributes(inputNode.GetName(), provenance,
                                                 facts.series_description if facts else ""))
            showInSliceViews(node)

        node = addVolumeNode(
            scene, outputPath, readVolumeFromFile,
            resultName(scene, inputNode.GetName() if stacks == 1
                       else f"{inputNode.GetName()} + {stacks - 1} stacks"),
            formatProvenance(provenance), {**provenance, "source": inputNode.GetID() or ""},
            inputNode, setUp)
        return node

    def _loadConfidence(self, node) -> None:
        """The confidence map as a second node (removing the result if it cannot be added)."""
        if self._extraStacks or not confidence.wanted(self._params):
            return
        try:
            path = confidence.path_in(self._tempDir)
            if not os.path.isfile(path):
                raise RunError("the engine exited without writing the confidence map")
            self.confidenceNode = confidence.add_node(node, path, readVolumeFromFile)
        except Exception:
            self._scene.RemoveNode(node)
            raise
        confidence.show_overlay(node, self.confidenceNode)

    def _cleanup(self) -> None:
        if self._tempDir and os.path.isdir(self._tempDir):
            shutil.rmtree(self._tempDir, ignore_errors=True)

    def _release(self) -> None:
        with InterSliceSRLogicCore._activeLock:
            if InterSliceSRLogicCore._activeRun is self:
                InterSliceSRLogicCore._activeRun = None


def checkInputNode(node) -> None:
    """A volume the engine can take: scalar, not a label map, with image data, in a scene."""
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise ValueError("InterSliceSR needs a scalar volume node as input")
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise ValueError(f"'{node.GetName()}' is a label map; InterSliceSR is for intensity images")
    if node.GetImageData() is None:
        raise ValueError(f"volume '{node.GetName()}' has no image data")
    if node.GetScene() is None:
        raise ValueError(f"volume '{node.GetName()}' is not in a scene")


def killedBySignal(returncode) -> str:
    """A message for an engine ended by a signal ("" otherwise). SIGKILL from outside is what
    the kernel's out-of-memory killer sends, so that is the likely cause users should hear."""
    if returncode is None:
        return ""
    signum = -returncode if returncode < 0 else (returncode - 128 if returncode in (137,) else 0)
    if signum <= 0:
        return ""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    if signum == signal.SIGKILL:
        return (f"the engine was killed ({name}), most likely because the system ran out of "
                "memory (out of memory?); choose a coarser spacing, crop the volume or close "
                "other programs; nothing was added")
    return f"the engine was killed by {name}; nothing was added"


# ---------------------------------------------------------------------- MRML helpers
def writeVolumeToFile(volumeNode, path) -> None:
    """Write a volume node through a storage node that is not added to the scene (the scene
    and the node's own storage node are left untouched; MRML RAS -> ITK LPS is handled)."""
    import slicer

    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(path)
    storageNode.SetUseCompression(False)
    if not storageNode.WriteData(volumeNode):
        image = volumeNode.GetImageData()
        needed = 4096
        if image is not None:
            needed += image.GetNumberOfPoints() * image.GetNumberOfScalarComponents() * \
                image.GetScalarSize()
        full = disk_full_reason(os.path.dirname(path), needed)
        raise RunError(f"could not write '{volumeNode.GetName()}' to a temporary file {path}"
                       + (f": {full}" if full else ""))


def readVolumeFromFile(volumeNode, path) -> None:
    import slicer

    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(path)
    storageNode.SetSingleFile(True)
    if not storageNode.ReadData(volumeNode) or volumeNode.GetImageData() is None:
        raise RunError(f"could not read the engine's result {path}")


def copyDisplaySettings(sourceNode, targetNode) -> None:
    """Same window/level and colour table as the input, so the two compare at a glance."""
    source = sourceNode.GetDisplayNode()
    target = targetNode.GetDisplayNode()
    if source is None or target is None:
        return
    if source.GetColorNodeID():
        target.SetAndObserveColorNodeID(source.GetColorNodeID())
    target.SetAutoWindowLevel(False)
    target.SetWindowLevel(source.GetWindow(), source.GetLevel())
    target.SetInterpolate(source.GetInterpolate())


def placeBeside(inputNode, outputNode) -> None:
    """Put the result in the same subject-hierarchy folder/study as the input."""
    import slicer

    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(inputNode.GetScene())
    if shNode is None:
        return
    invalid = shNode.GetInvalidItemID() if hasattr(shNode, "GetInvalidItemID") else 0
    inputItem = shNode.GetItemByDataNode(inputNode)
    if inputItem == invalid:
        return
    parent = shNode.GetItemParent(inputItem)
    outputItem = shNode.GetItemByDataNode(outputNode)
    if outputItem == invalid:
        shNode.CreateItem(parent, outputNode)
    else:
        shNode.SetItemParent(outputItem, parent)


def showInSliceViews(node) -> None:
    """Show the result in the slice views (only when Slicer's GUI is there)."""
    try:
        import slicer

        if getattr(slicer, "app", None) is None or slicer.util.mainWindow() is None:
            return
        slicer.util.setSliceViewerLayers(background=node, fit=True)
    except Exception:
        logging.debug("InterSliceSR: could not update the slice views", exc_info=True)


# ---------------------------------------------------------------------- provenance
def _shortKey(key) -> str:
    return protocol.short_key(key)


def formatProvenance(provenance: dict) -> str:
    """Node description: synthesised slices must never pass for acquired ones."""
    lines = ["Synthesised by InterSliceSR (inter-slice super-resolution): the slices between the "
             "acquired ones were computed, not measured."]
    for key in protocol.ordered(provenance):
        lines.append(f"{key}: {provenance[key]}")
    return "\n".join(lines)


def readNrrdProvenance(path) -> dict:
    """``intersr_*`` key/value fields (``key:=value``) from a NRRD header."""
    return protocol.read_nrrd_provenance(path)
