"""InterSliceSR: inter-slice super-resolution of thick-slice MR volumes, as a 3D Slicer module.

Thin Slicer layer (module, parameter node, widget, logic, test). Everything that does not
need Qt lives in InterSliceSRLib/ (tested headless); the engine (intersr/) runs in a separate
PythonSlicer process and is never imported here, so neither is torch.

Supported Slicer versions: 5.6 to 5.12 and 5.13 (preview); see docs/slicer.md.
"""
import logging
import os
from typing import Annotated

import vtk

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    Choice,
    Decimals,
    WithinRange,
    parameterNodeWrapper,
)

from slicer import vtkMRMLScalarVolumeNode

from intersr import options
from InterSliceSRLib import dependencies
from InterSliceSRLib.engine_process import EngineProcess
from InterSliceSRLib.geometry import describe_volume_node
from InterSliceSRLib.logic import InterSliceSRLogicCore, RunError, RunParameters
from InterSliceSRLib.progress import STAGE_LABELS

SAMPLE_NAME = "InterSliceSR T1 thick slices"
SAMPLE_FILE = "KmeansTest_T1UCharRaw.nii.gz"
SAMPLE_SHA256 = "e0e5975587f3f7916804bdd317c493cdb99cdb3703bf2671d458528f62510327"


def _tr(text):
    """Translatable text on Slicer >= 5.4 (slicer.i18n); plain text otherwise."""
    try:
        from slicer.i18n import tr

        return tr(text)
    except ImportError:  # pragma: no cover
        return text


#
# InterSliceSR
#


class InterSliceSR(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _tr("InterSliceSR")
        self.parent.categories = ["Filtering"]
        self.parent.dependencies = []  # PyTorchUtils is optional at load time (used on first run)
        self.parent.contributors = ["InterSliceSR contributors"]
        self.parent.helpText = _tr("""
Inter-slice super-resolution of a thick-slice (anisotropic) MR volume. A pretrained network is
fine-tuned on the selected volume itself (self-supervised, in a background process) and computes
the missing slices; the result is added as a new volume "&lt;input&gt; isotropic". The input is never
modified. Synthesised slices are not measured ones: the new node's description records how it was
made (method, version, weights, factor, thickness, fine-tuning steps and loss).
<br><br>Methods: X. Wang et al., "Inter-slice Super-resolution of Magnetic Resonance Images by
Pre-training and Self-supervised Fine-tuning", ISBI 2024,
<a href="https://arxiv.org/abs/2406.05974">arXiv:2406.05974</a>;
K. Xuan et al., "Reducing Magnetic Resonance Image Spacing by Learning Without Ground-Truth",
Pattern Recognition 2021, <a href="https://arxiv.org/abs/2003.12627">arXiv:2003.12627</a>.
<br>Documentation: <a href="https://github.com/intersr/SlicerInterSliceSR/blob/main/docs/slicer.md">docs/slicer.md</a>.
""")
        self.parent.acknowledgementText = _tr("""
InterSliceSR builds on the methods of Wang et al. (ISBI 2024) and Xuan et al. (Pattern Recognition
2021), on 3D Slicer's scripted module template, and on the PyTorch extension (SlicerPyTorch) for
installing PyTorch. The sample scan is KmeansTest_T1UCharRaw from the Insight Toolkit examples
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
        SampleData.SampleDataLogic.registerCustomSampleDataCategory("InterSliceSR", title="InterSliceSR")
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
    device - "auto", "cuda" or "cpu".
    budget - fine-tuning budget: a preset of intersr.options.BUDGET_PRESETS (per device) or "seconds".
    budgetSeconds - fine-tuning seconds when budget is "seconds".
    seed - random seed of the fine-tuning.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    targetSpacing: Annotated[float, WithinRange(0.0, 50.0), Decimals(3)] = 0.0
    sliceThickness: Annotated[float, WithinRange(0.0, 50.0), Decimals(3)] = 0.0
    device: Annotated[str, Choice(list(options.DEVICES))] = "auto"
    budget: Annotated[str, Choice(list(options.GUI_BUDGETS))] = options.DEFAULT_PRESET
    budgetSeconds: Annotated[float, WithinRange(1.0, 7200.0), Decimals(0)] = 120.0
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0


#
# InterSliceSRWidget
#


class InterSliceSRWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._pollTimer = None
        self._torchProbe = None
        self._torchInfo = None

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/InterSliceSR.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = InterSliceSRLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.progressBar.setVisible(False)
        self.ui.logTextEdit.setMaximumBlockCount(2000)

        # The GUI polls the engine (events are queued by a reader thread) from the main thread.
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(100)
        self._pollTimer.connect("timeout()", self.onPollTimer)

        self.initializeParameterNode()
        self.startTorchProbe()

    def cleanup(self) -> None:
        if self.logic is not None and self.logic.isRunning:
            self.logic.cancel()
        if self._pollTimer is not None:
            self._pollTimer.stop()
        if self._torchProbe is not None:
            self._torchProbe.terminate(grace_seconds=1.0)
            self._torchProbe = None
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        if self.logic is not None and self.logic.isRunning:
            self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets carry a "SlicerParameterName" dynamic property in the .ui file.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._updateGui()

    # ------------------------------------------------------------------ display
    def _updateGui(self, caller=None, event=None) -> None:
        running = self.logic is not None and self.logic.isRunning
        node = self._parameterNode.inputVolume if self._parameterNode else None
        info = describe_volume_node(node, self._parameterNode.targetSpacing) if node else None
        if info is None:
            for label in (self.ui.sliceAxisLabel, self.ui.inputGeometryLabel,
                          self.ui.outputGeometryLabel, self.ui.memoryLabel):
                label.text = "-"
        else:
            summary = info.summary()
            self.ui.sliceAxisLabel.text = summary["slice_axis"]
            self.ui.inputGeometryLabel.text = summary["input"]
            self.ui.outputGeometryLabel.text = summary["output"]
            self.ui.memoryLabel.text = summary["memory"]
            if info.isotropic_input and not self._parameterNode.targetSpacing:
                self.ui.outputGeometryLabel.text = "input is already isotropic: set an output spacing"
        if self._parameterNode:
            self.ui.budgetSecondsSpinBox.enabled = self._parameterNode.budget == "seconds" and not running
        if running:
            self.ui.applyButton.text = "Cancel"
            self.ui.applyButton.toolTip = "Stop the computation; nothing is added to the scene."
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.text = "Apply"
            ok = info is not None and not (info.isotropic_input and not self._parameterNode.targetSpacing)
            self.ui.applyButton.enabled = ok
            self.ui.applyButton.toolTip = ("Compute the isotropic volume in the background." if ok
                                           else "Select a thick-slice input volume.")
        for widget in (self.ui.inputSelector, self.ui.targetSpacingSpinBox, self.ui.sliceThicknessSpinBox,
                       self.ui.deviceComboBox, self.ui.budgetComboBox, self.ui.seedSpinBox,
                       self.ui.installDependenciesButton):
            widget.enabled = not running

    def _appendLog(self, text) -> None:
        for line in str(text).splitlines():
            self.ui.logTextEdit.appendPlainText(line)

    # ------------------------------------------------------------------ torch info
    def startTorchProbe(self) -> None:
        """Ask a PythonSlicer process what torch offers (never imports torch into Slicer)."""
        self.ui.torchLabel.text = dependencies.format_torch_info(None)
        if not dependencies.torch_installed():
            self._torchInfo = {"torch": {"installed": False}}
            self._showTorchInfo()
            return
        try:
            self._torchProbe = EngineProcess(dependencies.info_args())
        except Exception as exc:
            self.ui.torchLabel.text = f"could not query PyTorch: {exc}"
            return
        self._pollTimer.start()

    def _pollTorchProbe(self) -> None:
        if self._torchProbe is None:
            return
        for event in self._torchProbe.events():
            info = dependencies.info_from_event(event)
            if info is not None:
                self._torchInfo = info
        if self._torchProbe.finished:
            self._torchProbe = None
            if self._torchInfo is None:
                self._torchInfo = {"torch": {"installed": False}}
            self._showTorchInfo()

    def _showTorchInfo(self) -> None:
        info = self._torchInfo or {}
        text = dependencies.format_torch_info(info)
        missing = dependencies.missing_requirements()
        if missing:
            text += "\nMissing Python packages: " + ", ".join(missing)
        self.ui.torchLabel.text = text
        needInstall = not (info.get("torch") or {}).get("installed") or bool(missing)
        self.ui.installDependenciesButton.text = "Install dependencies" if needInstall else "Dependencies installed"
        self.ui.installDependenciesButton.setEnabled(needInstall)
        if needInstall:
            self.ui.environmentCollapsibleButton.collapsed = False

    def onInstallDependencies(self) -> bool:
        with slicer.util.tryWithErrorDisplay("Failed to install dependencies.", waitCursor=True):
            result = dependencies.ensure_dependencies(ask_confirmation=True)
            if result["restart_needed"]:
                if slicer.util.confirmYesNoDisplay(
                        "Packages that were already loaded were updated. Restart Slicer now?"):
                    slicer.util.restart()
            self._torchInfo = None
            self.startTorchProbe()
            return True
        return False

    # ------------------------------------------------------------------ run
    def onApplyButton(self) -> None:
        if self.logic.isRunning:
            self._appendLog("Cancelling...")
            self.logic.cancel()
            self._runEnded()
            return
        if not dependencies.torch_installed() or dependencies.missing_requirements():
            if not slicer.util.confirmOkCancelDisplay(
                    "InterSliceSR needs PyTorch and a few Python packages that are not installed yet. "
                    "Install them now?", "InterSliceSR"):
                return
            if not self.onInstallDependencies():
                return
            if not dependencies.torch_installed():
                return
        self.ui.logTextEdit.clear()
        self.ui.statusLabel.text = ""
        self.ui.progressBar.value = 0
        self.ui.progressBar.format = "Starting..."
        self.ui.progressBar.setVisible(True)
        params = RunParameters.fromParameterNode(self._parameterNode)
        with slicer.util.tryWithErrorDisplay("Failed to start InterSliceSR.", waitCursor=True):
            self.logic.start(self._parameterNode.inputVolume, params, on_event=self.onEngineEvent)
            self._pollTimer.start()
        self._updateGui()

    def onPollTimer(self) -> None:
        self._pollTorchProbe()
        if self.logic.isRunning:
            self.logic.poll()
        if not self.logic.isRunning and self._torchProbe is None:
            self._pollTimer.stop()

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
                self._appendLog(f"Data consistency with the acquired slices: {consistency:.2f} dB")
        elif stage == "result":
            self.ui.statusLabel.text = event.get("message", "")
            self._runEnded()
        elif stage == "failed":
            self.ui.statusLabel.text = "Failed: " + event.get("message", "")
            self._runEnded()
            slicer.util.errorDisplay("InterSliceSR failed:\n\n" + event.get("message", ""),
                                     detailedText="\n".join(state.log[-50:]))
        elif stage == "cancelled":
            self.ui.statusLabel.text = STAGE_LABELS["cancelled"] + ": nothing was added to the scene."
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
    ``wait=False`` returns at once and a timer finishes the run (see ``state`` / ``outputNode``).
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        InterSliceSRLogicCore.__init__(self)
        self._consoleTimer = None

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

    def start(self, inputNode, params=None, on_event=None):
        InterSliceSRLogicCore.start(self, inputNode, params, on_event)
        if on_event is None:  # console use without the widget: a timer finishes the run
            import qt

            self._consoleTimer = qt.QTimer()
            self._consoleTimer.setInterval(200)
            self._consoleTimer.connect("timeout()", self._onConsoleTimer)
            self._consoleTimer.start()

    def _onConsoleTimer(self):
        if self.poll() != "running":
            self._consoleTimer.stop()
            if self.state == "failed":
                logging.error(f"InterSliceSR failed: {self.errorMessage}")
            elif self.state == "succeeded":
                logging.info(f"InterSliceSR added '{self.outputNode.GetName()}'")


#
# InterSliceSRTest
#


class InterSliceSRTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: the same flow as the GUI on the embedded sample, tiny budget."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleResultNode()
        self.setUp()
        self.test_CancelAddsNothing()
        self.setUp()
        self.test_FailureAddsNothing()

    def _loadSample(self):
        import SampleData

        registerSampleData()
        return SampleData.downloadSample(SAMPLE_NAME)

    def test_SampleResultNode(self):
        self.delayDisplay("Loading the embedded sample")
        inputVolume = self._loadSample()
        self.assertIsNotNone(inputVolume)
        before = slicer.util.arrayFromVolume(inputVolume).copy()
        count = slicer.mrmlScene.GetNumberOfNodes()
        info = describe_volume_node(inputVolume)

        self.delayDisplay("Running InterSliceSR (2 fine-tuning steps)")
        logic = InterSliceSRLogic()
        out = logic.process(inputVolume, device="cpu", adaptSteps=2, seed=0)

        self.assertEqual(out.GetName(), inputVolume.GetName() + " isotropic")
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
        self.assertTrue(logic.cancel())
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
