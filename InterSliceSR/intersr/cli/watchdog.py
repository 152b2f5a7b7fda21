"""`--parent-pid PID`: the engine follows the program that launched it (the Slicer module).

A daemon thread checks twice a second that PID still runs. When it ends (Slicer crashed or was
killed), the run is cancelled exactly as SIGTERM cancels it (the partial output is removed,
exit code 130); should the main thread not get there within a few seconds (stuck in native
code), the thread removes this process's partial files itself and ends the process, so the
engine is gone within 5 s either way. A background run also yields: lower priority (nice 10 on
POSIX, BELOW_NORMAL on Windows through psutil when it is there) and one core left free
(`options.cpu_threads`).

Works without psutil: /proc or kill(pid, 0) on POSIX, a process handle on Windows.
"""
from __future__ import annotations

import _thread
import os
import shutil
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError
from ..options import cpu_threads
from ..progress import Progress

POLL_SECONDS = 0.5
HARD_EXIT_SECONDS = 3.5  # after the polite cancel: poll + this < 5 s
CANCELLED_EXIT_CODE = 130

_reason: str | None = None  # set when the parent is gone: the cancel message


def parent_gone_reason() -> str | None:
    return _reason


class _Parent:
    """A handle on the parent process that survives its pid being reused."""

    def __init__(self, pid: int):
        self.pid = pid
        self.handle = None
        self.proc = None
        self.psutil = None
        try:
            import psutil

            self.psutil = psutil
            try:
                self.proc = psutil.Process(pid)
            except psutil.Error:
                self.proc = None
                raise ProcessLookupError(pid) from None
            return
        except ImportError:
            pass
        if os.name == "nt":  # pragma: no cover - Windows without psutil
            import ctypes

            synchronize = 0x00100000
            self.handle = ctypes.windll.kernel32.OpenProcess(synchronize, False, pid)
            if not self.handle:
                raise ProcessLookupError(pid)
        elif not _posix_alive(pid):
            raise ProcessLookupError(pid)

    def alive(self) -> bool:
        if self.proc is not None:
            psutil = self.psutil
            try:
                return self.proc.is_running() and self.proc.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                return False
        if self.handle is not None:  # pragma: no cover - Windows without psutil
            import ctypes

            return ctypes.windll.kernel32.WaitForSingleObject(self.handle, 0) != 0  # 0: ended
        return _posix_alive(self.pid)


def _posix_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a zombie has ended (its parent has not reaped it yet)
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")
    except OSError:
        return True


def lower_priority() -> str:
    """Run below normal priority so that the launching program stays responsive."""
    if os.name == "nt":  # pragma: no cover - Windows
        try:
            import psutil

            psutil.Process().nice(psutil.BELOW_NORMAL_PRIORITY_CLASS)
            return "below normal priority"
        except Exception:
            return "normal priority (psutil is needed to lower it on Windows)"
    try:
        os.nice(10)
        return "nice 10"
    except OSError:
        return "normal priority"


def remove_partial_outputs(output_path: str) -> None:
    """This process's temporary outputs beside OUTPUT (volumes/write.py, dicom_write.py)."""
    folder = Path(os.fspath(output_path).rstrip("/" + os.sep) or ".").parent
    for path in folder.glob(f".intersr-{os.getpid()}.partial*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def watch(pid: int, output_path: str, log=None) -> threading.Event:
    """Start watching `pid`; InputError at once when it is not running. Set the returned
    event to stop watching (the run is over: an in-process caller goes on living)."""
    try:
        parent = _Parent(pid)
    except ProcessLookupError:
        raise InputError(f"--parent-pid {pid}: no such process is running (the program that "
                         "launched this run has already ended); nothing was done") from None

    stop = threading.Event()

    def loop():
        global _reason
        while parent.alive():
            if stop.wait(POLL_SECONDS):
                return
        if stop.is_set():
            return
        _reason = (f"cancelled: the parent process {pid} ended (--parent-pid); the partial "
                   "output was removed")
        if log is not None:
            log(f"intersr: {_reason}")
        if os.name == "nt":  # pragma: no cover - Windows: interrupt the main thread
            _thread.interrupt_main()
        else:  # the same path as SIGTERM (cli/app.py turns it into Cancelled)
            os.kill(os.getpid(), signal.SIGTERM)
        if stop.wait(HARD_EXIT_SECONDS):
            return  # the run ended (cancelled): the main thread exits normally
        # still here: the main thread is stuck in native code; end it from this thread
        remove_partial_outputs(output_path)
        try:
            sys.stderr.write(f"intersr: error: {_reason}\n")
            sys.stderr.flush()
        finally:
            os._exit(CANCELLED_EXIT_CODE)

    threading.Thread(target=loop, name="intersr-parent-watchdog", daemon=True).start()
    return stop


@contextmanager
def following_parent(run_options, output_path: str, progress: "Progress"):
    """With --parent-pid: lower priority, and a watchdog that cancels when that process ends."""
    if run_options.parent_pid is None:
        yield
        return
    stop_watching = watch(run_options.parent_pid, output_path, progress.log)
    progress.log(f"intersr: following process {run_options.parent_pid} (--parent-pid): "
                 f"{lower_priority()}, {cpu_threads(run_options)} CPU threads")
    try:
        yield
    finally:
        stop_watching.set()
