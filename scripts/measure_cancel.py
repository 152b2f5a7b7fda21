#!/usr/bin/env python3
"""Measure Cancel of a launcher-with-child process tree (as PythonSlicer starts the engine):
seconds until launcher and child are gone, and the longest single call the GUI thread makes
(request_stop, then `finished` polled every 10 ms), with and without psutil, for a child that
exits on SIGTERM and one that ignores it. Run: .venv/bin/python scripts/measure_cancel.py [N]
"""
import builtins
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "InterSliceSR"))
sys.path.insert(0, str(ROOT / "Testing"))

from InterSliceSRLib.engine_process import EngineProcess  # noqa: E402
from test_engine_process import HELPERS, LAUNCHER, running, stop_like_the_gui, wait_for_file  # noqa: E402


def hide_psutil():
    real = builtins.__import__

    def no_psutil(name, *args, **kwargs):
        if name == "psutil":
            raise ImportError("hidden")
        return real(name, *args, **kwargs)

    builtins.__import__ = no_psutil
    return lambda: setattr(builtins, "__import__", real)


def main(repeats: int) -> None:
    print("mode        child            runs  gone_s median/max   longest_call_ms median/max  survivors")
    for mode in ("psutil", "no-psutil"):
        restore = hide_psutil() if mode == "no-psutil" else (lambda: None)
        try:
            for stubborn in (False, True):
                gone, longest, survivors = [], [], 0
                for _ in range(repeats):
                    pidfile = Path(tempfile.mkdtemp()) / "child.pid"
                    args = LAUNCHER + [sys.executable, str(HELPERS / "child_engine.py"), str(pidfile)]
                    proc = EngineProcess(args + (["--ignore-term"] if stubborn else []))
                    child = wait_for_file(pidfile)
                    time.sleep(0.1)
                    block, seconds = stop_like_the_gui(proc)
                    gone.append(seconds)
                    longest.append(block * 1000)
                    survivors += running(child) + running(proc.pid)
                print(f"{mode:<11} {'ignores SIGTERM' if stubborn else 'exits on SIGTERM':<16} {repeats:>4}  "
                      f"{statistics.median(gone):.3f}/{max(gone):.3f}         "
                      f"{statistics.median(longest):.2f}/{max(longest):.2f}              {survivors}")
        finally:
            restore()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
