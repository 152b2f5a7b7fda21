"""Issue 27 item 1: dependencies install in the background, never on the GUI thread.

A REAL Qt event loop (PySide6, offscreen) drives ``InterSliceSRLib.installer.BackgroundInstall``
the way the module does (``schedule`` = QTimer.singleShot) while fake installs (subprocesses
that sleep and print, or fail like pip) and a real pip (offline, a package that does not exist)
run; the panel's Install button is checked on the real widgets of the module's .ui file.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "InterSliceSR"))
sys.path.insert(0, str(ROOT / "Testing" / "helpers"))

import slicer  # noqa: E402,F401  (loaded before any module code in Slicer; i18n's _ imports it)

from InterSliceSRLib import dependencies, installer, panel  # noqa: E402
from InterSliceSRLib.installer import BackgroundInstall, InstallStep, pip_failure  # noqa: E402

SLOW = ("import sys, time\n"
        "for i in range(6):\n"
        "    print(f'Downloading part {i}', flush=True)\n"
        "    time.sleep(0.25)\n")
PIP_LIKE_FAILURE = ("import sys, time\n"
                    "print('Collecting onnxruntime>=1.16', flush=True)\n"
                    "time.sleep(0.3)\n"
                    "sys.stderr.write('ERROR: Could not find a version that satisfies the requirement "
                    "onnxruntime>=1.16 (from versions: none)\\n')\n"
                    "sys.stderr.write('ERROR: No matching distribution found for onnxruntime>=1.16\\n')\n"
                    "sys.exit(1)\n")


def fake(package, code):
    return InstallStep(package, [sys.executable, "-c", code])


def drive(qapp, install, timeout_s=60.0):
    """Run a real QEventLoop while ``install`` polls itself through QTimer.singleShot; return
    the heartbeats of a 10 ms timer (the GUI thread's liveness) and the longest gap."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    beats = [time.monotonic()]
    running_beats = []

    def beat():
        now = time.monotonic()
        beats.append(now)
        if install.running:
            running_beats.append(now)
        if not install.running or now - beats[0] > timeout_s:
            loop.quit()

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(beat)
    timer.start()
    install.schedule = QTimer.singleShot
    install.start()
    loop.exec()
    timer.stop()
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    return running_beats, max(gaps) if gaps else 0.0


def test_event_loop_keeps_ticking_while_a_fake_install_runs(qapp):
    lines, done = [], []
    install = BackgroundInstall([fake("onnxruntime", SLOW), fake("torch", SLOW)], on_line=lines.append,
                                on_step_done=lambda step: done.append(step.package),
                                on_finished=lambda i: done.append("finished:" + i.state), poll_ms=50)
    running_beats, longest_gap = drive(qapp, install)
    assert install.state == "succeeded" and done == ["onnxruntime", "torch", "finished:succeeded"]
    # ~3 s of installing: the 10 ms heartbeat kept beating all along (the GUI thread was free)
    assert len(running_beats) > 50
    assert longest_gap < 0.5, longest_gap
    assert lines[0] == "Installing onnxruntime (1 of 2)..." and "Installing torch (2 of 2)..." in lines
    assert sum(line.startswith("Downloading part") for line in lines) == 12  # progress in the log
    assert lines[-1] == "Dependencies installed."


def test_a_failing_install_gives_one_message_with_package_and_pip_reason(qapp):
    lines, finished = [], []
    install = BackgroundInstall([fake("onnxruntime>=1.16", PIP_LIKE_FAILURE), fake("torch", SLOW)],
                                on_line=lines.append, on_finished=finished.append, poll_ms=50)
    drive(qapp, install)
    assert install.state == "failed" and finished == [install]
    assert install.message == ("Could not install onnxruntime>=1.16: No matching distribution found for "
                               "onnxruntime>=1.16")
    assert install.failed_package == "onnxruntime>=1.16"
    assert [line for line in lines if line.startswith("Could not install")] == [install.message]  # once
    assert "Installing torch (2 of 2)..." not in lines  # nothing after the failing step


def test_real_pip_failure_is_read_from_its_own_output(qapp):
    """The real pip of this environment, offline, asked for a package that does not exist: the
    message is built from pip's stderr, as on every Slicer version (no Slicer dialog involved)."""
    step = installer.pip_step(sys.executable, ["no-such-package-intersr-test>=1"], constraints=str(
        Path(dependencies.write_constraints())))
    step.args[step.args.index("install") + 1:step.args.index("install") + 1] = ["--no-index"]
    install = BackgroundInstall([step], poll_ms=50)
    install.temp_files.append(step.args[step.args.index("-c") + 1])
    drive(qapp, install, timeout_s=120)
    assert install.state == "failed"
    assert install.message.startswith("Could not install no-such-package-intersr-test>=1: ")
    assert "No matching distribution found" in install.message
    assert not Path(install.temp_files[0]).exists()  # the constraints file is removed at the end


@pytest.mark.parametrize("output, expected", [
    (["WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError(...: "
      "Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')'",
      "ERROR: Could not find a version that satisfies the requirement torch>=2.0 (from versions: none)",
      "ERROR: No matching distribution found for torch>=2.0"],
     ("torch>=2.0", "no connection to the package index (check the network or proxy settings)")),
    (["ERROR: Cannot install onnxruntime==1.16.0 because these package versions have conflicting dependencies.",
      "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/..."],
     ("onnxruntime==1.16.0", "Cannot install onnxruntime==1.16.0 because these package versions have "
                             "conflicting dependencies.")),
    (["ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"],
     ("torch", "the disk is full")),
    (["Traceback (most recent call last):", "ModuleNotFoundError: No module named 'light_the_torch'"],
     ("torch", "ModuleNotFoundError: No module named 'light_the_torch'")),
])
def test_pip_reasons(output, expected):
    assert pip_failure(output, "torch", 1) == expected


def test_cancel_stops_the_install_at_once(qapp):
    from PySide6.QtCore import QTimer

    lines = []
    long_step = fake("torch", "import time\nprint('Downloading torch', flush=True)\ntime.sleep(60)\n")
    install = BackgroundInstall([long_step, fake("never", SLOW)], on_line=lines.append, poll_ms=50)
    QTimer.singleShot(400, install.cancel)
    drive(qapp, install, timeout_s=30)
    assert install.state == "cancelled" and install.message == "" and install.installed == []
    assert lines[-1] == "Installation cancelled (torch was not installed)."


def test_install_is_disabled_while_probing_or_installing_on_the_real_panel(qapp):
    import panel_qt

    ui = panel_qt.load_panel()
    button, cancel = panel_qt.child(ui, "installDependenciesButton"), panel_qt.child(ui, "cancelInstallButton")
    panel_qt.apply_state(ui, panel.panel_state(running=False, needs_install=True))
    assert button.isEnabled() and button.text() == "Install dependencies" and not cancel.isVisibleTo(ui)
    panel_qt.apply_state(ui, panel.panel_state(running=False, needs_install=True, probing=True))
    assert not button.isEnabled() and button.text() == "Checking..."
    panel_qt.apply_state(ui, panel.panel_state(running=False, needs_install=True, installing=True, torch_ready=False))
    assert not button.isEnabled() and button.text() == "Installing..."
    assert cancel.isVisibleTo(ui) and cancel.isEnabled()
    ui.deleteLater()


def test_quick_result_is_offered_without_torch_and_adaptation_once_torch_is_there():
    class Info:
        isotropic_input = False

        def summary(self):
            return {"slice_axis": "K", "input": "-", "output": "-", "memory": "-"}

    quick = panel.panel_state(running=False, info=Info(), torch_ready=False)
    assert quick["applyButton"]["text"] == "Quick result" and quick["applyButton"]["enabled"]
    assert "ONNX Runtime" in quick["applyButton"]["toolTip"]
    for name in ("methodComboBox", "budgetComboBox", "seedSpinBox", "quickCheckBox"):
        assert quick[name]["enabled"] is False, name
    full = panel.panel_state(running=False, info=Info(), torch_ready=True)
    assert full["applyButton"]["text"] == "Apply"
    assert all(full[name]["enabled"] for name in ("methodComboBox", "budgetComboBox", "seedSpinBox", "quickCheckBox"))


class Recorder:
    def __init__(self, answer=True):
        self.answer, self.questions = answer, []

    def __call__(self, message, title=""):
        self.questions.append(message)
        return self.answer


class FakeLauncher:
    """Records each step's command and succeeds at once."""

    def __init__(self):
        self.commands = []

    def __call__(self, args):
        self.commands.append(list(args))
        outer = self

        class Done:
            finished, stopping, returncode = True, False, 0

            def events(self):
                return [{"stage": "log", "message": f"ran {len(outer.commands)}"}]

            def request_stop(self):
                pass

        return Done()


def test_one_question_then_packages_then_torch_all_pinned():
    plan = {"torch": True, "packages": ["psutil>=5.8", dependencies.ONNX_REQUIREMENT], "blocker": None}
    confirm, launcher = Recorder(True), FakeLauncher()
    install = dependencies.start_install(plan, confirm, launcher=launcher, python="PythonSlicer")
    assert len(confirm.questions) == 1 and "onnxruntime" in confirm.questions[0] and "torch" in confirm.questions[0]
    while install.poll() == "running":
        pass
    assert install.state == "succeeded"
    first, ltt, torch = launcher.commands
    assert first[:4] == ["PythonSlicer", "-m", "pip", "install"] and first[-2:] == plan["packages"]
    assert ltt[-1] == installer.LTT_REQUIREMENT
    assert torch[1:4] == ["-m", "light_the_torch", "install"] and torch[-1] == installer.TORCH_REQUIREMENT
    for command in launcher.commands:  # Slicer's numpy / SimpleITK / vtk pinned on every step
        assert "-c" in command
        assert not {"numpy", "SimpleITK", "vtk"} & {installer.requirement_name(a) for a in command[4:]}
    assert not Path(install.temp_files[0]).exists()


def test_declining_testing_mode_and_blocker_install_nothing():
    plan = {"torch": True, "packages": [], "blocker": None}
    launcher = FakeLauncher()
    declined = Recorder(False)
    assert dependencies.start_install(plan, declined, launcher=launcher) is None and len(declined.questions) == 1
    testing = Recorder(True)
    assert dependencies.start_install(plan, testing, testing=True, launcher=launcher) is None
    assert not testing.questions
    blocked = Recorder(True)
    with pytest.raises(RuntimeError, match="Intel Mac"):
        dependencies.start_install(dict(plan, blocker=dependencies.torch_blocker("darwin", "x86_64", "2.0.2")),
                                   blocked, launcher=launcher)
    assert not blocked.questions and launcher.commands == []
