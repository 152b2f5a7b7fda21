"""InterSliceSR: inter-slice super-resolution of thick-slice MR volumes, as a 3D Slicer module.

Thin Slicer layer (module, parameter node, widget, logic, test). Everything that does not
need Qt lives in InterSliceSRLib/ (tested headless); the engine (intersr/) runs in a separate
PythonSlicer process and is never imported here, so neither is torch.

Slicer versions: the Extensions Index builds the stable release and the preview; from a source
checkout it also runs on 5.6 - 5.10 (docs/slicer.md, "Supported Slicer versions").
"""
import dataclasses
import logging
import os
from typing import Annotated

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    Choice,
    WithinRange,
    parameterNodeWrapper,
)

from slicer import vtkMRMLScalarVolumeNode

# Only standard-library modules load with the module (no numpy, SimpleITK or torch at start-up);
# InterSliceSRLib.geometry (numpy, SimpleITK) is imported when a volume is shown.
# intersr.options (the run options' one declaration) is standard-library only.
from intersr import options
from InterSliceSRLib import dependencies
from InterSliceSRLib.binding import ParameterNodeBinding
from InterSliceSRLib.engine_process import EngineProcess
from InterSliceSRLib.logic import InterSliceSRLogicCore, RunError, RunParameters
from InterSliceSRLib.panel import DEVICE_CHOICES, first_intensity_volume, label_choices, panel_state
from InterSliceSRLib.progress import STAGE_LABELS

SAMPLE_NAME = "InterSliceSR T1 thick slices"
SAMPLE_FILE = "KmeansTest_T1UCharRaw.nii.gz"
SAMPLE_SHA256 = "e0e5975587f3f7916804bdd317c493cdb99cdb3703bf2671d458528f62510327"


#
# InterSliceSR
#


class InterSliceSR(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("InterSliceSR")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []  # PyTorchUtils is optional at load time (used on first run)
        self.parent.contributors = ["InterSliceSR project (independent)"]  # as EXTENSION_CONTRIBUTORS
        self.parent.helpText = _("""
Inter-slice super-resolution of a thick-slice (anisotropic) MR volume. A pretrained network is
fine-tuned on the selected volume itself (self-supervised, in a background process) and computes
the missing slices; the result is added as a new volume "&lt;input&gt; (InterSliceSR synthesised)". The
input is never modified. Synthesised slices are not measured ones: the new node's description records
how it was made (method, version, weights, factor, thickness, fine-tuning steps and loss), and a DICOM
export marks it DERIVED\\SECONDARY with that provenance.
<br><br>Methods: X. Wang et al., "Inter-slice Super-resolution of Magnetic Resonance Images by
Pre-training and Self-supervised Fine-tuning", ISBI 2024,
<a href="https://arxiv.org/abs/2406.05974">arXiv:2406.05974</a>;
K. Xuan et al., "Reducing Magnetic Resonance Image Spacing by Learning Without Ground-Truth",
Pattern Recognition 2021, <a href="https://arxiv.org/abs/2003.12627">arXiv:2003.12627</a>.
<br>Documentation: <a href="https://github.com/intersr/SlicerInterSliceSR/blob/main/docs/slicer.md">docs/slicer.md</a>.
""")
        self.parent.acknowledgementText = _("""
Engine, pretrained weights, Slicer module, tests and documentation: InterSliceSR project (independent).
InterSliceSR builds on the methods of Wang et al. (ISBI 2024) and Xuan et al. (Pattern Recognition
2021), on 3D Slicer's scripted module template, and on light-the-torch (as the PyTorch extension uses it)
for installing PyTorch. The sample scan is KmeansTest_T1UCharRaw from the Insight Toolkit examples
(Apache-2.0).
""")
        # Sample data is registered once the application has started (SampleData is loaded then).
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data (the engine package's own file, intersr/data/sample: nothing is downloaded)
#


def registerSampleData():
    import pathlib

    import SampleData

    from intersr.resources import SAMPLE  # the engine package's own sample file

    resources = os.path.join(os.path.dirname(__file__), "Resources")
    path = str(SAMPLE)
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):  # Slicer >= 5.11
        SampleData.SampleDataLogic.registerCustomSampleDataCategory("InterSliceSR", title=_("InterSliceSR"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="InterSliceSR",
        sampleName=SAMPLE_NAME,
        thumbnailFileName=os.path.join(resources, "Icons", "InterSliceSR.png"),
        # A file:// URI: SampleData "downloads" it with urllib from the extension folder.
        uris=pathlib.Path(path).as_uri(),
        fileNames=SAMPLE_FILE,
        checksums=f"SHA256:{SAMPLE_SHA256}",
        nodeNames=SAMPLE_NAME,
    )


#
# InterSliceSRParameterNode
#


@parameterNodeWrapper
class InterSliceSRParameterNode:
    """
    inputVolume - thick-slice scalar volume (never modified).
    targetSpacing - output spacing along the slice axis in mm; 0 = isotropic.
    sliceThickness - slice profile FWHM in mm; 0 = auto (DICOM SliceThickness or slice spacing).
    device - "auto", "cuda" (not on macOS) or "cpu" (InterSliceSRLib.panel.device_choices).
    budget - fine-tuning budget: a preset of intersr.options.BUDGET_PRESETS (per device) or "seconds".
    budgetSeconds - fine-tuning seconds when budget is "seconds".
    seed - random seed of the fine-tuning.
    method - what the network is fine-tuned on: "self-supervised" or "vae-pairs" (docs/vae.md).
    noAdapt - quick mode: the shipped network without fine-tuning (runs without PyTorch, ONNX Runtime).
    confidenceMap - also add "<result> confidence" (expected error per voxel), a colour overlay.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    # Decimals live in the .ui file: a Decimals(...) annotation is unused by the serializer and
    # makes parameterNodeWrapper log "Unused annotations" at every start.
    targetSpacing: Annotated[float, WithinRange(0.0, 50.0)] = 0.0
    sliceThickness: Annotated[float, WithinRange(0.0, 50.0)] = 0.0
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    budget: Annotated[str, Choice(list(options.GUI_BUDGETS))] = options.DEFAULT_PRESET
    budgetSeconds: Annotated[float, WithinRange(1.0, 7200.0)] = 120.0
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    method: Annotated[str, Choice(list(options.GUI_METHODS))] = "self-supervised"
    noAdapt: bool = False
    confidenceMap: bool = False


class InterSliceSRWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._binding = None
        self._observedNode = None
        self._probeTimer = None
        self._torchProbe = None
        self._torchInfo = None
        self._install = None  # the background install (InterSliceSRLib/installer.py) while it runs

    @property
    def _parameterNode(self):
        return self._binding.wrapper if self._binding is not None else None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/InterSliceSR.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = InterSliceSRLogic()
        self._binding = ParameterNodeBinding(self.ui, after_connect=label_choices)  # translated items

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.cancelInstallButton.connect("clicked(bool)", lambda: self._install and self._install.cancel())
        self.ui.progressBar.setVisible(False)
        self.ui.logTextEdit.setMaximumBlockCount(2000)

        # The torch probe's events are queued by a reader thread; drained here, in the main thread.
        self._probeTimer = qt.QTimer()
        self._probeTimer.setInterval(200)
        self._probeTimer.connect("timeout()", self._pollTorchProbe)

        self.initializeParameterNode()
        self.startTorchProbe()

    def cleanup(self) -> None:
        # Any run (GUI or Python console) stops with the module (reload, application exit).
        InterSliceSRLogicCore.cancelActive(wait=True, timeout=3.0)
        if self._probeTimer is not None:
            self._probeTimer.stop()
        if self._torchProbe is not None:
            self._torchProbe.request_stop()
            self._torchProbe = None
        if self._install is not None:
            self._install.cancel()
        if self._binding is not None:
            self._binding.unbind()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # The connection is kept while the parameter node stays the same: reconnecting it is
        # what reset the combo boxes on Slicer 5.6/5.8 (see InterSliceSRLib/binding.py).
        pass

    def onSceneStartClose(self, caller, event) -> None:
        InterSliceSRLogicCore.cancelActive(wait=False)  # whoever started it; its timer finishes it
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = first_intensity_volume(slicer.mrmlScene)  # never a label map
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Widgets carry a "SlicerParameterName" property in the .ui file; the binding connects
        them once per parameter node and disconnects them on every Slicer version."""
        if self._binding.bind(inputParameterNode):
            if self._observedNode is not None:
                self.removeObserver(self._observedNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._observedNode = self._binding.node
            if self._observedNode is not None:
                self.addObserver(self._observedNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._updateGui()

    # ------------------------------------------------------------------ display
    def _updateGui(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        node = parameters.inputVolume if parameters else None
        info = None
        if node is not None:
            from InterSliceSRLib.geometry import describe_volume_node  # numpy + SimpleITK: only now

            info = describe_volume_node(node, parameters.targetSpacing)
        quick = bool(parameters.noAdapt) if parameters else False
        plan = dependencies.install_plan(quick) if self._torchInfo is not None else None
        state = panel_state(
            running=self.logic.isRunning, cancelling=self.logic.isCancelling, info=info,
            target_spacing=parameters.targetSpacing if parameters else 0.0,
            budget=parameters.budget if parameters else "balanced", quick=quick,
            needs_install=plan is None or not dependencies.plan_is_empty(plan), torch_ready=self._torchReady(),
            installing=self._install is not None, probing=self._torchProbe is not None)
        for widgetName, properties in state.items():
            widget = getattr(self.ui, widgetName)
            for name, value in properties.items():
                setattr(widget, name, value)

    def _appendLog(self, text) -> None:
        for line in str(text).splitlines():
            self.ui.logTextEdit.appendPlainText(line)

    # ------------------------------------------------------------------ torch info
    def startTorchProbe(self) -> None:
        """Ask a PythonSlicer process what torch offers (the module never imports torch)."""
        self.ui.torchLabel.text = dependencies.format_torch_info(None)
        if not dependencies.torch_installed():
            self._torchInfo = {"torch": {"installed": False}}
            self._showTorchInfo()
            return
        try:
            self._torchProbe = EngineProcess(dependencies.info_args())
        except Exception as exc:
            self.ui.torchLabel.text = _("could not query PyTorch: {error}").format(error=exc)
            return
        self._probeTimer.start()

    def _pollTorchProbe(self) -> None:
        if self._torchProbe is None:
            self._probeTimer.stop()
            return
        for event in self._torchProbe.events():
            info = dependencies.info_from_event(event)
            if info is not None:
                self._torchInfo = info
        if self._torchProbe.finished:
            self._torchProbe = None
            self._probeTimer.stop()
            if self._torchInfo is None:
                self._torchInfo = {"torch": {"installed": False}}
            self._showTorchInfo()

    def _showTorchInfo(self) -> None:
        info = self._torchInfo or {}
        text = dependencies.format_torch_info(info)
        missing = dependencies.missing_requirements()
        if missing:
            text += "\n" + _("Missing Python packages: {names}").format(names=", ".join(missing))
        blocker = dependencies.torch_blocker() if not (info.get("torch") or {}).get("installed") else None
        if blocker:
            text += "\n" + blocker
        self.ui.torchLabel.text = text
        if not (info.get("torch") or {}).get("installed") or missing:
            self.ui.environmentCollapsibleButton.collapsed = False
        self._updateGui()

    def _torchReady(self) -> bool:
        """Adaptation needs PyTorch; while it is missing (or being installed) the run is the quick result."""
        return self._install is None and dependencies.torch_installed()

    def onInstallDependencies(self) -> None:
        self.installDependencies(dependencies.install_plan(bool(self._parameterNode.noAdapt)))

    def installDependencies(self, plan, then=None) -> None:
        """Ask ONCE, then install in a background process (never in testing mode): progress in
        the log, 'Cancel install' stops it; ``then`` runs when everything planned is in."""
        self._afterInstall = then
        try:
            install = dependencies.start_install(
                plan, slicer.util.confirmOkCancelDisplay, testing=slicer.app.testingEnabled(),
                schedule=qt.QTimer.singleShot, on_line=self._appendLog, on_finished=self._installFinished,
                on_step_done=lambda step: self._updateGui())
        except Exception as exc:  # the Intel-Mac blocker, an unwritable temporary folder
            install = None
            self.ui.statusLabel.text = _("Dependencies were not installed: {error}").format(error=exc)
        if install is not None and install.running:
            self._install = install
            self.ui.environmentCollapsibleButton.collapsed = False
        elif install is None and not self.ui.statusLabel.text:
            self.ui.statusLabel.text = _("Dependencies were not installed.")
        self._updateGui()

    def _installFinished(self, install) -> None:
        self._install = None
        if install.state == "failed":  # one message: the package and pip's reason
            self.ui.statusLabel.text = install.message
            slicer.util.errorDisplay(install.message, detailedText="\n".join(install.lines[-50:]))
        elif install.state == "succeeded":
            self.ui.statusLabel.text = _("Dependencies installed.")
            if install.restart_needed and not slicer.app.testingEnabled():
                if slicer.util.confirmYesNoDisplay(_("Packages that were already loaded were updated. "
                                                     "Restart Slicer now?")):
                    slicer.util.restart()
        self._torchInfo = None
        self.startTorchProbe()
        then, self._afterInstall = getattr(self, "_afterInstall", None), None
        if then is not None and install.state == "succeeded":
            then()

    # ------------------------------------------------------------------ run
    def onApplyButton(self) -> None:
        if self.logic.isRunning:
            self._appendLog(_("Cancelling..."))
            self.logic.cancel(wait=False)  # returns at once; the logic's timer finishes the cancel
            self._updateGui()
            return
        quickOnly = not self._torchReady()  # no PyTorch (yet): the quick result, ONNX Runtime
        plan = dependencies.install_plan(bool(self._parameterNode.noAdapt) or quickOnly)
        if not dependencies.plan_is_empty(plan):
            if self._install is None:
                self.installDependencies(plan, then=self.onApplyButton)
            else:
                self._appendLog(_("Waiting for the installation to finish..."))
            return
        self.ui.logTextEdit.clear()
        self.ui.statusLabel.text = ""
        self.ui.progressBar.value = 0
        self.ui.progressBar.format = _("Starting...")
        self.ui.progressBar.setVisible(True)
        params = RunParameters.fromParameterNode(self._parameterNode)
        if quickOnly:
            params = dataclasses.replace(params, noAdapt=True, backend="onnxruntime")
            self._appendLog(_("Quick result: the shipped network with ONNX Runtime, no adaptation."))
        try:
            with slicer.util.tryWithErrorDisplay(_("Failed to start InterSliceSR."), waitCursor=True):
                inputVolume = self._parameterNode.inputVolume  # + checked stacks: fusion
                extra = [n for n in self.ui.extraStacksSelector.checkedNodes() if n is not inputVolume]
                params = dataclasses.replace(params, noAdapt=True) if extra else params  # fuse: network alone
                self.logic.start(inputVolume, params, on_event=self.onEngineEvent, extraStacks=extra)
        except Exception as exc:  # already shown by tryWithErrorDisplay, which re-raises
            self.ui.progressBar.setVisible(False)
            self.ui.statusLabel.text = _("Could not start: {error}").format(error=exc)
        self._updateGui()

    def onEngineEvent(self, event) -> None:
        stage = event.get("stage")
        if stage == "log":
            self._appendLog(event.get("message", ""))
            return
        if event.get("message"):
            self._appendLog(f"[{stage}] {event['message']}")
        state = self.logic.progress
        self.ui.progressBar.value = state.percent
        self.ui.progressBar.format = state.text().replace("%", "%%") + "  (%p%)"
        if stage == "done":
            consistency = event.get("data_consistency_db")
            if consistency is not None:
                self._appendLog(_("Data consistency with the acquired slices: {db} dB").format(
                    db=f"{consistency:.2f}"))
        elif stage == "result":
            self.ui.statusLabel.text = event.get("message", "")
            self._runEnded()
        elif stage == "failed":
            self.ui.statusLabel.text = _("Failed: {error}").format(error=event.get("message", ""))
            self._runEnded()
            slicer.util.errorDisplay(_("InterSliceSR failed:") + "\n\n" + event.get("message", ""),
                                     detailedText="\n".join(state.log[-50:]))
        elif stage == "cancelled":
            self.ui.statusLabel.text = _("{cancelled}: nothing was added to the scene.").format(
                cancelled=STAGE_LABELS["cancelled"])
            self._runEnded()

    def _runEnded(self) -> None:
        self.ui.progressBar.setVisible(self.logic.state == "succeeded")
        self._updateGui()


#
# InterSliceSRLogic
#


class InterSliceSRLogic(ScriptedLoadableModuleLogic, InterSliceSRLogicCore):
    """Slicer logic = the Qt-free InterSliceSRLib logic plus the parameter node.

    Console API (Python interactor)::

        logic = slicer.util.getModuleLogic("InterSliceSR")   # or InterSliceSR.InterSliceSRLogic()
        node = logic.process(slicer.util.getNode("MRHead"), spacing=None, thickness=None,
                             device="auto", adaptSeconds=60)

    ``process(..., wait=True)`` keeps Slicer's event loop running while it waits;
    ``wait=False`` returns at once and the logic's own timer finishes the run, with or without
    ``on_event`` (see ``state`` / ``outputNode``).
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        InterSliceSRLogicCore.__init__(self)
        # Every run finishes by itself from Qt's event loop, whoever started it.
        self.schedule = qt.QTimer.singleShot

    def getParameterNode(self):
        return InterSliceSRParameterNode(super().getParameterNode())

    def wait(self, timeout=None, interval=0.05):
        """Wait for the run while keeping the GUI responsive."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() == "running":
            if deadline is not None and time.monotonic() > deadline:
                break
            slicer.app.processEvents()
            time.sleep(interval)
        return self.state


#
# InterSliceSRTest
#


class InterSliceSRTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (and on the extension build dashboards, where nothing is installed):
    the checks that need no engine always run; the engine runs (the same flow as the GUI on
    the embedded sample, tiny budget) need PyTorch and are skipped with a message without it."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleAndInputChecks()
        if not dependencies.torch_installed():
            self._runWithoutTorch()
            return
        self.setUp()
        self.test_SampleResultNode()
        self.setUp()
        self.test_CancelAddsNothing()
        self.setUp()
        self.test_FailureAddsNothing()

    def _runWithoutTorch(self):
        """A fresh Slicer (or a build dashboard) has no PyTorch: the quick path (no fine-tuning,
        ONNX Runtime) when onnxruntime is there, else a clear skip of the engine runs."""
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            self.delayDisplay("Neither PyTorch nor ONNX Runtime is installed: engine runs SKIPPED (install "
                              "them with the module's 'Install dependencies' button, then run this test again).")
            logging.warning("InterSliceSRTest: no PyTorch, no ONNX Runtime; engine runs skipped")
            return
        self.setUp()
        self.test_QuickResultNode()

    def test_QuickResultNode(self):
        """Quick mode: the shipped network without fine-tuning (runs without PyTorch)."""
        inputVolume = self._loadSample()
        count = slicer.mrmlScene.GetNumberOfNodes()
        out = InterSliceSRLogic().process(inputVolume, device="cpu", adaptSteps=0)
        self.assertEqual(out.GetName(), inputVolume.GetName() + " (InterSliceSR synthesised)")
        self.assertEqual(tuple(out.GetImageData().GetDimensions()), (128, 128, 93))
        self.assertGreater(slicer.mrmlScene.GetNumberOfNodes(), count)
        self.assertTrue(out.GetDescription().startswith("Synthesised"))
        self.delayDisplay("Quick (no fine-tuning) test passed")

    def _loadSample(self):
        import SampleData

        registerSampleData()
        return SampleData.downloadSample(SAMPLE_NAME)

    def test_SampleAndInputChecks(self):
        """No engine: the embedded sample loads offline, its grid is described, a label map is
        neither the default input nor accepted by the logic."""
        from InterSliceSRLib.geometry import describe_volume_node

        labelMap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels first")
        inputVolume = self._loadSample()
        self.assertIsNotNone(inputVolume)
        info = describe_volume_node(inputVolume)
        self.assertEqual(tuple(info.output_size), (128, 128, 93))
        self.assertIs(first_intensity_volume(slicer.mrmlScene), inputVolume)
        with self.assertRaises(ValueError):
            InterSliceSRLogic().start(labelMap)
        self.assertFalse(InterSliceSRLogicCore.anyRunning())
        self.delayDisplay("Sample and input checks passed")

    def test_SampleResultNode(self):
        from InterSliceSRLib.geometry import describe_volume_node

        self.delayDisplay("Loading the embedded sample")
        inputVolume = self._loadSample()
        self.assertIsNotNone(inputVolume)
        before = slicer.util.arrayFromVolume(inputVolume).copy()
        count = slicer.mrmlScene.GetNumberOfNodes()
        info = describe_volume_node(inputVolume)

        self.delayDisplay("Running InterSliceSR (2 fine-tuning steps)")
        logic = InterSliceSRLogic()
        out = logic.process(inputVolume, device="cpu", adaptSteps=2, seed=0)

        self.assertEqual(out.GetName(), inputVolume.GetName() + " (InterSliceSR synthesised)")
        self.assertEqual(tuple(out.GetImageData().GetDimensions()), tuple(info.output_size))
        self.assertGreater(slicer.mrmlScene.GetNumberOfNodes(), count)
        self.assertIn("method", out.GetDescription())
        import numpy as np

        np.testing.assert_array_equal(slicer.util.arrayFromVolume(inputVolume), before)
        self.delayDisplay("Test passed")

    def test_CancelAddsNothing(self):
        import time

        inputVolume = self._loadSample()
        count = slicer.mrmlScene.GetNumberOfNodes()
        logic = InterSliceSRLogic()
        logic.start(inputVolume, RunParameters(device="cpu", adaptSteps=1000000), on_event=lambda e: None)
        deadline = time.monotonic() + 120
        while logic.poll() == "running" and logic.progress.stage != "adapt" and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        with self.assertRaises(RuntimeError):
            InterSliceSRLogic().start(inputVolume, RunParameters(adaptSteps=0))
        tempDir = logic.tempDir
        # States, not durations (a loaded build machine takes any time): cancel returns while
        # the tree is still stopping, and the logic's own timer finishes it.
        self.assertTrue(logic.cancel(wait=False))
        self.assertTrue(logic.isCancelling or logic.state == "cancelled")
        logic.wait(timeout=120)
        self.assertEqual(logic.state, "cancelled")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        self.assertFalse(os.path.exists(tempDir))
        self.delayDisplay("Cancel test passed")

    def test_FailureAddsNothing(self):
        import numpy as np

        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "isotropic cube")
        slicer.util.updateVolumeFromArray(node, (np.arange(16 * 16 * 16) % 251).reshape(16, 16, 16).astype(np.int16))
        count = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(RunError) as context:
            InterSliceSRLogic().process(node, device="cpu", adaptSteps=0)
        self.assertIn("isotropic", str(context.exception))
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        self.delayDisplay("Failure test passed")
