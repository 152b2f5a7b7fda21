"""Run ``python -m intersr run ...`` in a background process and collect its events.

- The command is started through ``slicer.util.launchConsoleProcess`` (available with the
  same ``args, useStartupEnvironment, updateEnvironment, cwd`` arguments in Slicer 5.6 to 5.13);
  it merges stderr into stdout, so human log lines arrive between the JSON events.
- A daemon reader thread turns each line into an event (see ``progress.parse_line``) and puts it
  in a thread-safe queue. The owner drains the queue from its own thread (the GUI does it from
  a QTimer), so MRML and Qt are only ever touched from the main thread. No Qt here.
- ``terminate()`` ends the whole process tree (psutil when available).
"""
from __future__ import annotations

import os
import queue
import shutil
import sys
import threading
import time

from intersr import options
from intersr.protocol import parse_line

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../InterSliceSR

def python_executable() -> str:
    """PythonSlicer inside Slicer (Slicer's own Python, no GUI); this interpreter otherwise."""
    try:
        import slicer

        in_slicer_app = getattr(slicer, "app", None) is not None
    except ImportError:  # pragma: no cover - slicer-core is a test dependency
        in_slicer_app = False
    if in_slicer_app:
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def build_engine_args(input_path, output_path, run_options=None, *, python=None, **values) -> list:
    """The full command line (list of str) for one engine run.

    ``run_options``: an ``intersr.options.RunOptions``; or give option values by name
    (``spacing=1.25, budget="best"``). The flags come from the engine's one declaration
    (``intersr.options``): invalid values raise ``intersr.errors.InputError`` (a ValueError).
    """
    if run_options is None:
        run_options = options.make(**values)
    elif values:
        raise ValueError("give RunOptions or option values, not both")
    return [python or python_executable(), "-m", "intersr", "run", str(input_path),
            str(output_path), *options.engine_args(run_options), "--progress", "jsonl"]


def engine_environment(extra=None) -> dict:
    """Variables added to the child's environment: the module folder on PYTHONPATH (so that
    ``-m intersr`` resolves to the engine shipped beside this file) and unbuffered output."""
    paths = [MODULE_DIR]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        paths.append(existing)
    env = {"PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    if extra:
        env.update(extra)
    return env


def _launch(args, cwd, env):
    import slicer.util

    return slicer.util.launchConsoleProcess(args, useStartupEnvironment=False,
                                            updateEnvironment=env, cwd=cwd)


class EngineProcess:
    """One running engine process: ``events()`` drains what the reader thread parsed."""

    def __init__(self, args, cwd=None, env=None):
        self.args = list(args)
        self.events_queue: queue.Queue = queue.Queue()
        self.proc = _launch(self.args, cwd, engine_environment(env))
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, name="InterSliceSR-engine-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.proc.stdout
        try:
            for line in iter(stream.readline, ""):
                self.events_queue.put(parse_line(line))
        except (ValueError, OSError):  # stream closed while terminating
            pass
        except UnicodeDecodeError as exc:
            self.events_queue.put({"stage": "log", "message": f"(undecodable engine output: {exc})"})
        finally:
            try:
                stream.close()
            except Exception:
                pass

    def events(self) -> list:
        """All events parsed since the last call (non-blocking)."""
        out = []
        while True:
            try:
                out.append(self.events_queue.get_nowait())
            except queue.Empty:
                return out

    @property
    def finished(self) -> bool:
        """True when the process has exited AND all of its output has been read."""
        return self.proc.poll() is not None and not self._reader.is_alive()

    @property
    def returncode(self):
        return self.proc.returncode

    def wait_finished(self, timeout=None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.proc.wait(timeout=timeout)
        except Exception:
            return False
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self._reader.join(remaining)
        return not self._reader.is_alive()

    def terminate(self, grace_seconds: float = 5.0) -> None:
        """End the engine and every process it started; returns when they are gone."""
        kill_process_tree(self.proc, grace_seconds)
        self._reader.join(grace_seconds)


def kill_process_tree(proc, grace_seconds: float = 5.0) -> None:
    """SIGTERM a Popen and its descendants (the engine removes its partial output on SIGTERM),
    then SIGKILL whatever is still alive after ``grace_seconds``. The Popen itself is reaped
    with ``proc.wait`` so that its return code stays meaningful."""
    try:
        import psutil
    except ImportError:
        psutil = None
    children = []
    if psutil is not None and proc.poll() is None:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
    if proc.poll() is None:
        try:
            proc.terminate()
        except OSError:
            pass
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    try:
        proc.wait(timeout=grace_seconds)
    except Exception:
        try:
            proc.kill()
        except OSError:
            pass
        proc.wait()
    if children:
        _gone, alive = psutil.wait_procs(children, timeout=grace_seconds)
        for child in alive:
            try:
                child.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=grace_seconds)
